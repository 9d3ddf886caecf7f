/**
 * What an API server process runs so that a deployment of servers and remote agents, with no
 * worker process (`serve`) at all, still keeps its promises (issue 26): the rescue of attempts
 * whose worker or agent is gone (every TASK_RECONCILE_INTERVAL_MS, 1 s by default: a lapsed lease,
 * a shortened one after an agent's stream ended, a worker process's free liveness lock), the
 * expiry of tasks past their deadline, and graphile-worker's cron jobs (the full reconcile pass
 * with priority aging, retention). Schedules already run in every server process (services.ts).
 *
 * Safe with any number of replicas (and worker processes doing the same): every rescue and expiry
 * is a guarded statement over rows locked FOR UPDATE SKIP LOCKED, and each cron job has one job
 * key, so one process runs each tick.
 */
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import { retryWhileUnavailable, type Db } from "../store/db.js";
import { databaseNow } from "../store/worker-liveness.js";
import { Expiry } from "../worker/expiry.js";
import { Maintenance } from "../worker/maintenance.js";
import { reconcile, rescueLostAttempts, type LeaseJudgement } from "../worker/reconcile.js";
import type { WorkerContext } from "../worker/runner.js";

/** The running upkeep of a server process. */
export interface Upkeep {
  stop(): Promise<void>;
}

/** What startUpkeep needs. */
export interface UpkeepDeps {
  db: Db;
  config: WorkerContext["config"];
  logger: Logger;
  metrics?: Metrics;
}

/** Starts the rescue loop, expiry and the cron jobs; see the module comment. */
export async function startUpkeep(deps: UpkeepDeps): Promise<Upkeep> {
  const { db, config, metrics } = deps;
  const logger = deps.logger.child({ component: "upkeep" });
  // Leases are not judged across this process's own downtime: it counts them from its start.
  const since = await retryWhileUnavailable(() => databaseNow(db.kysely), "starting the server's reconciler", Number.POSITIVE_INFINITY, logger);
  const judgement: LeaseJudgement = { leaseMs: config.leaseMs, since };
  const expiry = new Expiry({ db, logger });
  const maintenance = new Maintenance(
    { db, logger, config },
    { reconcile: () => reconcile(db.kysely, config.leaseMs, logger, since, metrics), idsChanged: () => undefined },
  );
  let rescuing: Promise<unknown> | undefined;
  const timer =
    config.reconcileIntervalMs > 0
      ? setInterval(() => {
          if (rescuing) return;
          rescuing = rescueLostAttempts(db.kysely, judgement, logger, metrics)
            .catch((err: unknown) => logger.warn({ err: errorMessage(err) }, "lost-attempt check failed"))
            .finally(() => (rescuing = undefined));
        }, config.reconcileIntervalMs)
      : undefined;
  await expiry.start();
  await maintenance.start();
  logger.info({ everyMs: config.reconcileIntervalMs }, "server upkeep started: rescue, expiry, reconcile and retention");
  return {
    async stop() {
      clearInterval(timer);
      await Promise.all([expiry.stop(), maintenance.stop(), rescuing]);
    },
  };
}
