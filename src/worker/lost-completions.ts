/**
 * graphile-worker 0.17 records a job's completion or failure without awaiting it (worker.js calls
 * completeJob/failJob and moves on), so when PostgreSQL goes away at that moment the rejection is
 * unhandled and Node would exit. The process survives that rejection (database-unavailable errors
 * only). graphile-worker runs only the cron jobs here: task attempts are claimed by claim-loop.ts,
 * whose statement deletes their jobs, so they are never locked. A cron job left locked is replaced
 * at its next tick (its job key is in replace mode) and freed by graphile-worker's lock timeout. A
 * lease after the loss the process also sweeps run_task jobs left locked (store/reconcile.ts
 * removeStaleJobs, retried while the database is still away), which only workers of an earlier
 * version, fetching through graphile-worker, can leave. Any other unhandled rejection keeps Node's
 * behaviour: it is a bug, and the process exits.
 */
import type { Kysely } from "kysely";
import { errorMessage, isDatabaseUnavailable } from "../errors.js";
import type { Logger } from "../logger.js";
import { removeStaleJobs } from "../store/reconcile.js";
import type { Database } from "../store/schema.js";

/** After a lost job completion, how long past the lease the sweep waits (and waits again while the database is away). */
const SWEEP_RETRY_MS = 2_000;

/** Starts surviving lost completions (see the module comment); returns the function that stops it. */
export function surviveLostCompletions(db: Kysely<Database>, leaseMs: number, logger: Logger): () => void {
  let sweep: NodeJS.Timeout | undefined;
  let stopped = false;
  const sweepLater = (delayMs: number) => {
    if (stopped) return;
    sweep ??= setTimeout(() => {
      removeStaleJobs(db, leaseMs).then(
        (n) => {
          sweep = undefined;
          if (n > 0) logger.info({ jobs: n }, "removed jobs whose completion was lost");
        },
        () => {
          sweep = undefined;
          sweepLater(SWEEP_RETRY_MS);
        },
      );
    }, delayMs);
  };
  const onRejection = (reason: unknown) => {
    if (!isDatabaseUnavailable(reason)) throw reason;
    logger.warn({ err: errorMessage(reason) }, "graphile-worker could not record a job's completion (database unavailable); the job is removed once its lock is a lease old");
    sweepLater(leaseMs + SWEEP_RETRY_MS);
  };
  process.on("unhandledRejection", onRejection);
  return () => {
    process.removeListener("unhandledRejection", onRejection);
    stopped = true;
    clearTimeout(sweep);
  };
}
