/**
 * A worker process's maintenance part: graphile-worker, with one slot, running the cron jobs that
 * every worker process schedules and one of them runs (a job key keeps one pending): the reconcile
 * pass (with priority aging) and retention. Task attempts never go through graphile-worker here
 * (claim-loop.ts takes them). The process survives graphile-worker's unawaited job completions
 * failing while the database is away (lost-completions.ts) from before this part starts until
 * after the pool has closed: startWorkers installs that guard.
 */
import { EventEmitter } from "node:events";
import { run, type Runner, type WorkerEvents } from "graphile-worker";
import { errorMessage } from "../errors.js";
import { retryWhileUnavailable } from "../store/db.js";
import { ageKeyedTasks, agePriorities } from "../store/jobs.js";
import { deleteExpiredTasks } from "../store/retention.js";
import { DEFAULT_UPLOAD_TTL_MS, sweepFiles } from "../store/files.js";
import { graphileLogger } from "../graphile-logger.js";
import { RECONCILE_TASK, type ReconcileResult } from "./reconcile.js";
import type { WorkerContext, WorkerPart } from "./runner.js";

/** The graphile-worker cron task that deletes finished tasks past their retention (store/retention.ts). */
export const RETENTION_TASK = "task_retention";

/** Longest a retention pass runs; the next pass continues where it stopped. */
const RETENTION_BUDGET_MS = 60_000;

/** What maintenance needs besides the worker's context. */
export interface MaintenanceOptions {
  /** A full reconcile pass (the rescue part's, which judges leases from its start). */
  reconcile: () => Promise<ReconcileResult>;
  /** graphile-worker took a new id (its pool, its slot): report it (the heartbeat carries them). */
  idsChanged: () => void;
}

/** graphile-worker running the cron jobs; see the module comment. */
export class Maintenance implements WorkerPart {
  /** The ids graphile-worker locks jobs under in this process, so a reconciler can release them if it dies. */
  readonly graphileIds = new Set<string>();
  private runner: Runner | undefined;

  constructor(
    private readonly ctx: Pick<WorkerContext, "db" | "logger" | "config">,
    private readonly options: MaintenanceOptions,
  ) {}

  /** Starts graphile-worker (waiting out a database that is away meanwhile). */
  async start(): Promise<void> {
    const { ctx } = this;
    const { config, db, logger } = ctx;
    const events = new EventEmitter() as WorkerEvents;
    const took = (id: string) => {
      this.graphileIds.add(id);
      this.options.idsChanged();
    };
    events.on("pool:create", ({ workerPool }) => took(workerPool.id));
    events.on("worker:create", ({ worker }) => took(worker.workerId));
    this.runner = await retryWhileUnavailable(() => run({
      pgPool: db.pool,
      concurrency: 1,
      noHandleSignals: true,
      pollInterval: config.pollIntervalMs,
      logger: graphileLogger(logger),
      gracefulShutdownAbortTimeout: config.shutdownGraceMs,
      events,
      // jobKey: one pending job of each however many worker processes schedule it.
      crontab: [
        `${config.reconcileCron} ${RECONCILE_TASK} ?max=1&jobKey=${RECONCILE_TASK}&jobKeyMode=replace`,
        `${config.retentionCron} ${RETENTION_TASK} ?max=1&jobKey=${RETENTION_TASK}&jobKeyMode=replace`,
      ].join("\n"),
      taskList: {
        [RETENTION_TASK]: async (_payload, helpers) => {
          const policy = { succeededMs: config.retainSucceededMs, failedMs: config.retainFailedMs, cancelledMs: config.retainCancelledMs, expiredMs: config.retainExpiredMs, auditMs: config.auditRetentionMs };
          const result = await deleteExpiredTasks(db.kysely, policy, config.retentionBatchSize, RETENTION_BUDGET_MS, helpers.abortSignal);
          if (result.succeeded + result.failed + result.cancelled + result.auditEvents > 0) logger.info(result, "retention: deleted finished tasks and old audit rows");
          // Uploads no task took and files left incomplete (an upload or export cut short).
          let swept = 0;
          for (let n = config.retentionBatchSize; n === config.retentionBatchSize && !helpers.abortSignal?.aborted; swept += n) {
            n = await sweepFiles(db.kysely, config.uploadTtlMs ?? DEFAULT_UPLOAD_TTL_MS, config.retentionBatchSize);
          }
          if (swept > 0) logger.info({ swept }, "retention: deleted unused uploads and incomplete files");
        },
        [RECONCILE_TASK]: async () => {
          const result = await this.options.reconcile();
          const aged = await agePriorities(db.kysely, config.priorityAgingMs);
          const agedKeyed = await ageKeyedTasks(db.kysely, config.priorityAgingMs);
          logger.debug({ ...result, aged, agedKeyed }, "reconcile pass");
        },
      },
    }), "starting graphile-worker", Number.POSITIVE_INFINITY, logger);
  }

  /**
   * Stops graphile-worker within the grace period (a running cron job is then aborted). A cron job
   * it leaves locked is freed by the reconciler once this process's liveness lock is gone
   * (store/reconcile.ts releaseDeadWorkers), and replaced at its next tick in any case.
   */
  async stop(): Promise<void> {
    const { db, logger } = this.ctx;
    if (this.runner) {
      await this.runner.stop().catch((err: unknown) => logger.error({ err: errorMessage(err) }, "worker shutdown reported an error"));
    }
  }
}
