import type { PauseSignal } from "../plugins/types.js";

/** The pause state of one in-flight attempt, as notifications and heartbeats report it. */
export class AttemptPause implements PauseSignal {
  #paused = false;
  /** Date.now() of the latest change, so a heartbeat answer older than a notification cannot undo it. */
  changedAt = 0;
  readonly #listeners = new Set<(paused: boolean) => void>();

  get paused(): boolean {
    return this.#paused;
  }

  /** Sets the state; listeners hear only real changes. */
  set(paused: boolean): void {
    this.changedAt = Date.now();
    if (paused === this.#paused) return;
    this.#paused = paused;
    for (const listener of [...this.#listeners]) listener(paused);
  }

  onChange(listener: (paused: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  /** Drops every listener (the attempt ended). */
  clear(): void {
    this.#listeners.clear();
  }
}

/**
 * A timeout that does not run while the attempt is paused: `fire` is called once the attempt has
 * run (unpaused) for `ms` in total. Returns the function that cancels it.
 */
export function pausableTimeout(ms: number, pause: PauseSignal, fire: () => void): () => void {
  let remaining = ms;
  let since = Date.now();
  let timer: NodeJS.Timeout | undefined = pause.paused ? undefined : setTimeout(fire, remaining);
  const off = pause.onChange((paused) => {
    if (paused) {
      clearTimeout(timer);
      timer = undefined;
      remaining -= Date.now() - since;
    } else {
      since = Date.now();
      timer = setTimeout(fire, Math.max(0, remaining));
    }
  });
  return () => {
    off();
    clearTimeout(timer);
  };
}
