import type { Kysely } from "kysely";
import { deleteExpired, FINISHED_STATUSES } from "./lifecycle/index.js";
import type { Database } from "./schema.js";

/** How long finished tasks are kept, per outcome; 0 keeps them forever. */
export interface RetentionPolicy {
  succeededMs: number;
  failedMs: number;
  cancelledMs: number;
}

/** What one retention pass deleted, per outcome. */
export interface RetentionResult {
  succeeded: number;
  failed: number;
  cancelled: number;
  /** Statements run (one batch each). */
  batches: number;
}

/**
 * One retention pass: for each outcome with a retention age, deletes expired tasks in batches of
 * `batchSize` until none is left or `budgetMs` has been spent (the next pass continues). Between
 * batches nothing is held, so workers and API requests interleave freely.
 */
export async function deleteExpiredTasks(
  db: Kysely<Database>,
  policy: RetentionPolicy,
  batchSize: number,
  budgetMs = 60_000,
  stop?: AbortSignal,
): Promise<RetentionResult> {
  const result: RetentionResult = { succeeded: 0, failed: 0, cancelled: 0, batches: 0 };
  const deadline = Date.now() + budgetMs;
  const ages = { succeeded: policy.succeededMs, failed: policy.failedMs, cancelled: policy.cancelledMs };
  for (const status of FINISHED_STATUSES) {
    if (ages[status] <= 0) continue;
    for (;;) {
      if (Date.now() > deadline || stop?.aborted) return result;
      const n = await deleteExpired(db, status, ages[status], batchSize);
      result.batches++;
      result[status] += n;
      if (n < batchSize) break;
    }
  }
  return result;
}
