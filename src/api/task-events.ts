import type { Logger } from "../logger.js";
import { listen } from "../store/listen.js";

/** The channel the task_history/task_logs triggers notify (payload: task id). */
export const TASK_EVENTS_CHANNEL = "task_events";

/**
 * Wakes WatchTask streams when their task changes, from one LISTEN connection per server. Without
 * a connection URL (or while it is down) waits simply time out, and watchers poll.
 */
export class TaskEvents {
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly listener: { close(): Promise<void> } | undefined;

  constructor(databaseUrl: string | undefined, logger: Logger) {
    this.listener = databaseUrl ? listen(databaseUrl, TASK_EVENTS_CHANNEL, logger, (id) => this.wake(id)) : undefined;
  }

  private wake(taskId: string): void {
    const set = this.waiters.get(taskId);
    if (!set) return;
    this.waiters.delete(taskId);
    for (const resolve of set) resolve();
  }

  /** Resolves when the task changes, after `timeoutMs`, or when `signal` aborts. */
  wait(taskId: string, timeoutMs: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const set = this.waiters.get(taskId) ?? new Set();
      this.waiters.set(taskId, set);
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        set.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      timer.unref();
      signal.addEventListener("abort", done, { once: true });
      set.add(done);
    });
  }

  async close(): Promise<void> {
    await this.listener?.close();
    for (const id of [...this.waiters.keys()]) this.wake(id);
  }
}
