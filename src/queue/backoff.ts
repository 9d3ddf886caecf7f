/** How long to wait between attempts. */
export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
}

/**
 * The delay before the attempt after `attempt` (1-based): exponential, capped, with "equal jitter"
 * (half fixed, half random) so tasks that failed together do not retry in lockstep.
 */
export function backoffDelayMs(policy: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + random() * (exp / 2));
}

/** "250ms", "12s", "3m20s": for history rows people read. */
export function formatDelay(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
}
