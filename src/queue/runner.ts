import { randomBytes } from "node:crypto";
import { EventEmitter, setMaxListeners } from "node:events";
import os from "node:os";
import { run, type Runner, type WorkerEvents } from "graphile-worker";
import type { Config } from "../config.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import type { PluginRegistry } from "../plugins/registry.js";
import type { Plugin } from "../plugins/types.js";
import { heartbeat, unregisterWorker } from "../store/attempts.js";
import { openDb } from "../store/db.js";
import { listen } from "../store/listen.js";
import { CANCEL_CHANNEL, WAKE_CHANNEL } from "../store/transitions.js";
import { AttemptAborted, executeTask, parsePayload, type ExecuteDeps } from "./execute-task.js";
import { graphileLogger } from "./graphile-logger.js";
import { RUN_TASK } from "./jobs.js";
import { reconcile, RECONCILE_TASK, rescueLostAttempts } from "./reconcile.js";
import { WakeSchedule } from "./wake.js";

/** A running worker process's pool. */
export interface Workers {
  workerId: string;
  /** run_task jobs being handled right now (including attempts another worker has since taken over). */
  inFlight(): number;
  /**
   * Graceful stop: take no new jobs, let running attempts finish within the grace period, then
   * abort the rest (they are recorded as interrupted and retried elsewhere).
   */
  stop(): Promise<void>;
}

/** What startWorkers needs. */
export interface WorkerOptions {
  databaseUrl: string;
  registry: PluginRegistry<Plugin>;
  config: Pick<
    Config,
    | "workerConcurrency"
    | "localQueueSize"
    | "backoffBaseMs"
    | "backoffMaxMs"
    | "shutdownGraceMs"
    | "heartbeatIntervalMs"
    | "pollIntervalMs"
    | "maxLogLinesPerTask"
    | "maxResultBytes"
    | "leaseMs"
    | "reconcileCron"
    | "reconcileIntervalMs"
  >;
  logger: Logger;
  metrics?: Metrics;
}

/**
 * Starts graphile-worker with `concurrency` slots running task attempts, plus the heartbeat loop
 * and the cancel listener. Uses its own pool, sized for the concurrency.
 */
export async function startWorkers(options: WorkerOptions): Promise<Workers> {
  const { config } = options;
  const workerId = `${os.hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const logger = options.logger.child({ component: "worker", workerId });
  const db = openDb({ connectionString: options.databaseUrl, max: config.workerConcurrency + 4, applicationName: `task-service worker ${workerId}` }, logger);
  const inFlight = new Map<string, AbortController>();
  const cancel = (taskId: string) => inFlight.get(taskId)?.abort(new AttemptAborted("cancel", "cancelled by request"));
  const deps: ExecuteDeps = {
    db,
    registry: options.registry,
    workerId,
    logger,
    backoff: { baseMs: config.backoffBaseMs, maxMs: config.backoffMaxMs },
    maxLogLinesPerTask: config.maxLogLinesPerTask,
    maxResultBytes: config.maxResultBytes,
    inFlight,
    metrics: options.metrics,
  };

  const listener = listen(options.databaseUrl, CANCEL_CHANNEL, logger, cancel);
  // The ids graphile-worker locks jobs under in this process (its pool's, for the local queue, and
  // each slot's), reported with every heartbeat so the reconciler can release them if we die.
  const graphileIds = new Set<string>();
  const events = new EventEmitter() as WorkerEvents;
  // Jobs enqueued for later (delayed tasks, retries after backoff) wake the pool when due.
  let nudgePool: ((count: number) => void) | undefined;
  const wake = new WakeSchedule((count) => nudgePool?.(count));
  const wakeListener = listen(options.databaseUrl, WAKE_CHANNEL, logger, (payload) => payload.split(",").forEach((at) => wake.add(Number(at))));
  events.on("pool:create", ({ workerPool }) => {
    graphileIds.add(workerPool.id);
    nudgePool = (count) => workerPool.nudge(count);
  });
  events.on("worker:create", ({ worker }) => graphileIds.add(worker.workerId));
  const beatOnce = () =>
    heartbeat(db.kysely, workerId, [...graphileIds], [...inFlight.keys()]).then(
      (cancelled) => cancelled.forEach(cancel),
      (err: unknown) => logger.warn({ err: errorMessage(err) }, "heartbeat failed"),
    );
  const beat = setInterval(beatOnce, config.heartbeatIntervalMs);

  // One full reconcile pass at start-up, so tasks orphaned while no worker ran are rescued now.
  await reconcile(db.kysely, config.leaseMs, logger).catch((err: unknown) => logger.error({ err: errorMessage(err) }, "start-up reconcile failed"));
  const rescue =
    config.reconcileIntervalMs > 0
      ? setInterval(() => {
          rescueLostAttempts(db.kysely, config.leaseMs, logger).catch((err: unknown) => logger.warn({ err: errorMessage(err) }, "lost-attempt check failed"));
        }, config.reconcileIntervalMs)
      : undefined;

  // graphile-worker wants a local queue at least as large as the concurrency, or none (-1).
  const localQueueSize = config.localQueueSize === 0 ? -1 : Math.max(config.localQueueSize ?? config.workerConcurrency, config.workerConcurrency);
  let active = 0;
  let runner: Runner;
  try {
    runner = await run({
      pgPool: db.pool,
      concurrency: config.workerConcurrency,
      noHandleSignals: true,
      pollInterval: config.pollIntervalMs,
      logger: graphileLogger(logger),
      gracefulShutdownAbortTimeout: config.shutdownGraceMs,
      events,
      preset: { worker: { localQueue: { size: localQueueSize } } },
      // jobKey: one pending reconcile job however many worker processes schedule it.
      crontab: `${config.reconcileCron} ${RECONCILE_TASK} ?max=1&jobKey=${RECONCILE_TASK}&jobKeyMode=replace`,
      taskList: {
        [RUN_TASK]: async (payload, helpers) => {
          const parsed = parsePayload(payload);
          if (!parsed) {
            logger.error({ jobId: helpers.job.id, payload }, "ignoring a run_task job with a malformed payload");
            return;
          }
          // Every in-flight attempt listens on the pool's one shutdown signal.
          setMaxListeners(config.workerConcurrency + 10, helpers.abortSignal);
          active++;
          try {
            await executeTask(deps, parsed, String(helpers.job.id), helpers.abortSignal);
          } finally {
            active--;
          }
        },
        [RECONCILE_TASK]: async () => {
          const result = await reconcile(db.kysely, config.leaseMs, logger);
          logger.debug(result, "reconcile pass");
        },
      },
    });
  } catch (err) {
    clearInterval(beat);
    clearInterval(rescue);
    wake.stop();
    await Promise.all([listener.close(), wakeListener.close()]);
    await db.close();
    throw err;
  }
  await beatOnce();
  logger.info({ concurrency: config.workerConcurrency, localQueueSize }, "workers started");
  let stopping: Promise<void> | undefined;
  return {
    workerId,
    inFlight: () => active,
    stop: () =>
      (stopping ??= (async () => {
        logger.info({ inFlight: inFlight.size, graceMs: config.shutdownGraceMs }, "stopping workers");
        await runner.stop().catch((err: unknown) => logger.error({ err: errorMessage(err) }, "worker shutdown reported an error"));
        clearInterval(beat);
        clearInterval(rescue);
        wake.stop();
        await Promise.all([listener.close(), wakeListener.close()]);
        await unregisterWorker(db.kysely, workerId).catch((err: unknown) => logger.warn({ err: errorMessage(err) }, "could not unregister"));
        await db.close();
        logger.info("workers stopped");
      })()),
  };
}
