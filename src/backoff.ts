/**
 * Capped exponential backoff, the one way this codebase waits between failures: a task's retries
 * (execute-task.ts), and every loop that waits out PostgreSQL or the API going away (the claim
 * loop, outcome recording, start-up steps, the listener and liveness-lock connections, the
 * scheduler, `task list --watch`).
 *
 * Two shapes of loop use it: a call retried until it succeeds (`retry`), and an event-driven loop
 * that counts its own failures and asks how long to wait after each (`Backoff`), for loops that
 * are not one call (a reconnecting session, a claim round that a nudge may start early).
 */

/** How long to wait after failures in a row. */
export interface BackoffPolicy {
  /** The wait after the first failure; each further failure doubles it. */
  baseMs: number;
  /** The longest wait. */
  maxMs: number;
  /**
   * "Equal jitter": half the wait fixed, half random, so processes (or tasks) that failed together
   * do not retry in lockstep. Off: the exact exponential.
   */
  jitter?: boolean;
}

/** The wait after the `failures`th failure in a row (1-based; 0 counts as 1): exponential, capped, jittered if asked. */
export function backoffDelayMs(policy: BackoffPolicy, failures: number, random: () => number = Math.random): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(Math.max(0, failures - 1), 52));
  return policy.jitter ? Math.round(exp / 2 + random() * (exp / 2)) : exp;
}

/** The failures in a row of one loop: each asks for a longer wait, up to the cap; a success starts over. */
export class Backoff {
  private count = 0;

  constructor(private readonly policy: BackoffPolicy) {}

  /** Counts a failure and returns how long to wait before trying again. */
  failed(): number {
    this.count++;
    return backoffDelayMs(this.policy, this.count);
  }

  /** A success: the next failure waits the base delay again. */
  succeeded(): void {
    this.count = 0;
  }

  /** Failures since the last success. */
  get failures(): number {
    return this.count;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (it never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** What `retry` retries, and for how long. */
export interface RetryOptions {
  policy: BackoffPolicy;
  /** Whether a failure is worth another try; any other propagates at once. Default: every failure. */
  retryIf?: (err: unknown) => boolean;
  /** At most this many calls in all. Default: no limit. */
  attempts?: number;
  /** Give up (the last failure propagates) rather than wait past this many ms from the first call. Default: no limit. */
  patienceMs?: number;
  /** Aborting it ends a wait and gives up: the last failure propagates. */
  signal?: AbortSignal;
  /** Called before each wait (to log it); `failures` counts the failures so far. */
  onRetry?: (err: unknown, delayMs: number, failures: number) => void;
}

/** Calls `step` until it succeeds, waiting with backoff after each failure `retryIf` accepts (see RetryOptions). */
export async function retry<T>(step: () => Promise<T>, options: RetryOptions): Promise<T> {
  const deadline = Date.now() + (options.patienceMs ?? Number.POSITIVE_INFINITY);
  const backoff = new Backoff(options.policy);
  for (;;) {
    try {
      return await step();
    } catch (err) {
      const delayMs = backoff.failed();
      const retryable = options.retryIf?.(err) ?? true;
      const exhausted = backoff.failures >= (options.attempts ?? Number.POSITIVE_INFINITY) || Date.now() + delayMs > deadline;
      if (!retryable || exhausted || options.signal?.aborted) throw err;
      options.onRetry?.(err, delayMs, backoff.failures);
      await sleep(delayMs, options.signal);
      if (options.signal?.aborted) throw err;
    }
  }
}
