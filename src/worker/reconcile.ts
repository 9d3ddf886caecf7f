import { setTimeout as sleep } from "node:timers/promises";
import type { Kysely } from "kysely";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import { finishPendingCancels, requeueOrphans } from "../store/lifecycle/index.js";
import { releaseDeadWorkers, settleLostAttempts } from "../store/reconcile.js";
import type { Database } from "../store/schema.js";
import { foldTaskCountDeltas } from "../store/task-counts.js";
import { foldTaskFinishDeltas } from "../store/task-finishes.js";
import { deleteExpiredWatchers } from "../store/task-watchers.js";
import { workersWithFreeLocks } from "../store/worker-liveness.js";

/** The graphile-worker task identifier of the reconciler's cron job. */
export const RECONCILE_TASK = "reconcile";

const BATCH = 500;

/**
 * A worker's liveness lock must be seen free twice, this far apart, before the worker is declared
 * exited: a live worker whose lock connection alone dropped takes a new lock within ~100 ms.
 */
const EXIT_CONFIRM_MS = 200;

/** What one reconcile pass did. */
export interface ReconcileResult {
  lost: number;
  requeued: number;
  cancelled: number;
}

/** How a reconciler judges leases (see DeathRule in store/reconcile.ts). */
export interface LeaseJudgement {
  leaseMs: number;
  /** When this reconciler started, on the database's clock; leases are not judged across its downtime. */
  since: Date;
}

/** The workers whose liveness lock is free now and still free a moment later: they exited. */
async function exitedWorkers(db: Kysely<Database>): Promise<string[]> {
  const first = await workersWithFreeLocks(db);
  if (first.length === 0) return [];
  await sleep(EXIT_CONFIRM_MS);
  const second = new Set(await workersWithFreeLocks(db));
  return first.filter((id) => second.has(id));
}

/**
 * Only the dead-worker and lost-attempt checks: cheap (a small table, and an index on running
 * tasks' heartbeats), run every second so a worker process that exited is rescued at once (its
 * liveness lock is free), and a silent one within seconds of its lease running out.
 */
export async function rescueLostAttempts(db: Kysely<Database>, judgement: LeaseJudgement, logger: Logger, metrics?: Metrics): Promise<number> {
  const exited = await exitedWorkers(db);
  const dead = await releaseDeadWorkers(db, { ...judgement, exited });
  if (dead.length > 0) logger.warn({ workerIds: dead, exited }, "forgot worker processes that exited or stopped heartbeating");
  let total = 0;
  for (;;) {
    const settled = await settleLostAttempts(db, { ...judgement, exited, dead }, BATCH);
    for (const task of settled) {
      logger.warn({ taskId: task.id, attempt: task.attempts, status: task.status }, "rescued an attempt whose worker was lost");
      metrics?.rescuedAttempts.inc({ type: task.type, outcome: task.status });
    }
    total += settled.length;
    if (settled.length < BATCH) break;
  }
  return total;
}

/**
 * A full pass: lost attempts, tasks without a runnable job, and cancellations
 * left pending. Every step is a guarded statement, so passes may run concurrently with workers and
 * with each other. `since` defaults to the epoch (a one-off pass judges leases from the last
 * heartbeat or PostgreSQL start only).
 */
export async function reconcile(db: Kysely<Database>, leaseMs: number, logger: Logger, since = new Date(0), metrics?: Metrics): Promise<ReconcileResult> {
  const lost = await rescueLostAttempts(db, { leaseMs, since }, logger, metrics);
  const requeued = await requeueOrphans(db, BATCH);
  if (requeued.length > 0) logger.warn({ taskIds: requeued.map((t) => t.id) }, "re-enqueued tasks that had no job");
  const cancelled = await finishPendingCancels(db, BATCH);
  if (cancelled.length > 0) logger.info({ taskIds: cancelled.map((t) => t.id) }, "finished pending cancellations");
  await deleteExpiredWatchers(db);
  // API servers fold every few seconds; this keeps the deltas bounded where only workers run.
  await foldTaskCountDeltas(db);
  await foldTaskFinishDeltas(db);
  return { lost, requeued: requeued.length, cancelled: cancelled.length };
}
