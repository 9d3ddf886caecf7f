import type { Kysely } from "kysely";
import type { Logger } from "../logger.js";
import { finishPendingCancels, releaseDeadWorkers, requeueOrphans, settleLostAttempts } from "../store/reconcile.js";
import type { Database } from "../store/schema.js";
import { foldTaskCountDeltas } from "../store/task-counts.js";
import { deleteExpiredWatchers } from "../store/task-watchers.js";

/** The graphile-worker task identifier of the reconciler's cron job. */
export const RECONCILE_TASK = "reconcile";

const BATCH = 500;

/** What one reconcile pass did. */
export interface ReconcileResult {
  lost: number;
  requeued: number;
  cancelled: number;
}

/**
 * Only the dead-worker and lost-attempt checks: cheap (a small table, and an index on running
 * tasks' heartbeats), run often so a dead worker's tasks, started or only fetched, are retried
 * within seconds of the lease running out.
 */
export async function rescueLostAttempts(db: Kysely<Database>, leaseMs: number, logger: Logger): Promise<number> {
  const dead = await releaseDeadWorkers(db, leaseMs);
  if (dead.length > 0) logger.warn({ workerIds: dead }, "released the job locks of worker processes that stopped heartbeating");
  let total = 0;
  for (;;) {
    const settled = await settleLostAttempts(db, leaseMs, BATCH);
    for (const task of settled) {
      logger.warn({ taskId: task.id, attempt: task.attempts, status: task.status }, "rescued an attempt whose worker was lost");
    }
    total += settled.length;
    if (settled.length < BATCH) return total;
  }
}

/**
 * A full pass: lost attempts, tasks without a runnable job, and cancellations left pending. Every
 * step is a guarded statement, so passes may run concurrently with workers and with each other.
 */
export async function reconcile(db: Kysely<Database>, leaseMs: number, logger: Logger): Promise<ReconcileResult> {
  const lost = await rescueLostAttempts(db, leaseMs, logger);
  const requeued = await requeueOrphans(db, BATCH);
  if (requeued.length > 0) logger.warn({ taskIds: requeued }, "re-enqueued tasks that had no job");
  const cancelled = await finishPendingCancels(db, BATCH);
  if (cancelled.length > 0) logger.info({ taskIds: cancelled }, "finished pending cancellations");
  await deleteExpiredWatchers(db);
  // API servers fold every few seconds; this keeps the deltas bounded where only workers run.
  await foldTaskCountDeltas(db);
  return { lost, requeued: requeued.length, cancelled: cancelled.length };
}
