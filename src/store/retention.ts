import { sql, type Kysely } from "kysely";
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
 * Deletes up to `limit` tasks finished with `status` before `now - ageMs`, oldest first, with
 * their history and output (the foreign keys cascade, by index). One short statement: its rows are
 * locked only while it runs, and rows another transaction holds are skipped, not waited for.
 */
export async function deleteExpiredBatch(db: Kysely<Database>, status: "succeeded" | "failed" | "cancelled", ageMs: number, limit: number): Promise<number> {
  const { rows } = await sql<{ n: string }>`
    with doomed as (
      select id from tasks
      where status = ${status}::task_status and status in ('succeeded', 'failed', 'cancelled')
        and finished_at < now() - make_interval(secs => ${ageMs / 1000})
      order by finished_at
      limit ${limit}
      for update skip locked
    ),
    deleted as (
      delete from tasks t using doomed where t.id = doomed.id and t.status = ${status}::task_status returning 1
    )
    select count(*) as n from deleted
  `.execute(db);
  return Number(rows[0]?.n ?? 0);
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
  for (const status of ["succeeded", "failed", "cancelled"] as const) {
    if (ages[status] <= 0) continue;
    for (;;) {
      if (Date.now() > deadline || stop?.aborted) return result;
      const n = await deleteExpiredBatch(db, status, ages[status], batchSize);
      result.batches++;
      result[status] += n;
      if (n < batchSize) break;
    }
  }
  return result;
}
