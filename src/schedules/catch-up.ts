import type { CatchUpPolicy } from "../store/schema.js";

/**
 * A tick reached later than this after its time counts as missed (every process was down, or the
 * database was unreachable); a tick reached sooner is merely late and always runs.
 */
export const MISSED_AFTER_MS = 60_000;

/** A schedule's catch-up settings. */
export interface CatchUp {
  policy: CatchUpPolicy;
  backfillLimit: number;
}

/**
 * How many of the most recent due ticks to look at: every on-time one (a six-field expression
 * ticks at most once a second, so at most 61 within MISSED_AFTER_MS) plus as many missed ones as
 * the policy may run.
 */
export function candidateCount(catchUp: CatchUp, missedAfterMs = MISSED_AFTER_MS): number {
  const missed = catchUp.policy === "backfill" ? Math.max(1, catchUp.backfillLimit) : 1;
  // Capped: enumerating ticks backwards costs time per tick, and a test may stretch the window.
  return Math.min(Math.ceil(missedAfterMs / 1000) + 1, 1000) + missed;
}

/**
 * Which due ticks to run, oldest first. `due` holds the most recent due ticks, oldest first (at
 * most candidateCount of them); every due tick not returned is dropped. On-time ticks always run;
 * missed ones (reached more than `missedAfterMs` late) depend on the policy:
 *
 * - skip: none.
 * - latest: the most recent missed tick, unless an on-time tick runs anyway.
 * - backfill: the most recent `backfillLimit` missed ticks.
 */
export function ticksToRun(catchUp: CatchUp, due: Date[], now: Date, missedAfterMs = MISSED_AFTER_MS): Date[] {
  const onTime = due.filter((t) => now.getTime() - t.getTime() <= missedAfterMs);
  const missed = due.filter((t) => now.getTime() - t.getTime() > missedAfterMs);
  switch (catchUp.policy) {
    case "skip":
      return onTime;
    case "latest":
      return onTime.length > 0 ? onTime : missed.slice(-1);
    case "backfill":
      return [...missed.slice(-Math.max(1, catchUp.backfillLimit)), ...onTime];
  }
}
