/**
 * graphile-worker 0.17 records a job's completion or failure without awaiting it (worker.js calls
 * completeJob/failJob and moves on), so when PostgreSQL goes away at that moment the rejection is
 * unhandled and Node would exit. The process survives that rejection (database-unavailable errors
 * only). graphile-worker runs only the cron jobs here (task attempts are claimed by claim-loop.ts,
 * whose statement deletes their jobs), and a cron job left locked is replaced at its next tick (its
 * job key is in replace mode) and freed by graphile-worker's lock timeout, or at once by the
 * reconciler if this process dies (store/reconcile.ts releaseDeadWorkers). Any other unhandled
 * rejection keeps Node's behaviour: it is a bug, and the process exits.
 */
import { errorMessage, isDatabaseUnavailable } from "../errors.js";
import type { Logger } from "../logger.js";

/** Starts surviving lost completions (see the module comment); returns the function that stops it. */
export function surviveLostCompletions(logger: Logger): () => void {
  const onRejection = (reason: unknown) => {
    if (!isDatabaseUnavailable(reason)) throw reason;
    logger.warn({ err: errorMessage(reason) }, "graphile-worker could not record a cron job's completion (database unavailable); its next tick replaces it");
  };
  process.on("unhandledRejection", onRejection);
  return () => void process.removeListener("unhandledRejection", onRejection);
}
