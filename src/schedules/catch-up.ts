import type { CatchUpPolicy } from "../store/schema.js";

/** A tick reached later than this after its time counts as missed (the process was down or stalled). */
export const MISSED_AFTER_MS = 60_000;

/** A schedule's catch-up settings. */
export interface CatchUp {
  policy: CatchUpPolicy;
  backfillLimit: number;
}

/** How many of the most recent due ticks the policy may run: the candidates to enumerate. */
export function candidateCount(catchUp: CatchUp): number {
  return catchUp.policy === "backfill" ? Math.max(1, catchUp.backfillLimit) : 1;
}

/**
 * Which due ticks to run. `due` holds the most recent due ticks, oldest first (at most
 * candidateCount of them); every due tick not returned is dropped.
 *
 * - skip: only the latest tick, and only if it is on time (reached within MISSED_AFTER_MS).
 * - latest: the latest tick, however late.
 * - backfill: all of them (the latest backfill_limit ticks), oldest first.
 */
export function ticksToRun(catchUp: CatchUp, due: Date[], now: Date, missedAfterMs = MISSED_AFTER_MS): Date[] {
  const latest = due.at(-1);
  if (!latest) return [];
  switch (catchUp.policy) {
    case "skip":
      return now.getTime() - latest.getTime() <= missedAfterMs ? [latest] : [];
    case "latest":
      return [latest];
    case "backfill":
      return due.slice(-candidateCount(catchUp));
  }
}
