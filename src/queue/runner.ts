import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import os from "node:os";
import path from "node:path";
import { run, type Runner, type WorkerEvents } from "graphile-worker";
import type { Config } from "../config.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import type { PluginRegistry } from "../plugins/registry.js";
import type { Plugin } from "../plugins/types.js";
import { compileSchema, describeTaskType, schemaCompiler } from "../plugins/catalog.js";
import { agePriorities } from "../store/jobs.js";
import { QUEUE_CHANNEL } from "../store/queues.js";
import { registerWorkerTypes } from "../store/task-types.js";
import { openDb, retryWhileUnavailable, type Db } from "../store/db.js";
import { listen } from "../store/listen.js";
import { deleteExpiredTasks } from "../store/retention.js";
import { CANCEL_CHANNEL, heartbeat, PAUSE_CHANNEL, WAKE_CHANNEL } from "../store/lifecycle/index.js";
import { unregisterWorker } from "../store/workers.js";
import { databaseNow, holdWorkerLock, liveWorkers, workersWithFreeLocks } from "../store/worker-liveness.js";
import { AttemptAborted, recordOrSpool, runAttempt, type ExecuteDeps, type InFlightAttempt } from "./execute-task.js";
import { graphileLogger } from "./graphile-logger.js";
import { surviveLostCompletions } from "./lost-completions.js";
import { claimFor, ClaimLoop } from "./claim-loop.js";
import { QueueGate } from "./queue-gate.js";
import { OutcomeSpool } from "./outcome-spool.js";
import { OutcomeWriter } from "./outcome-writer.js";
import { reconcile, RECONCILE_TASK, rescueLostAttempts } from "./reconcile.js";
import { WakeSchedule } from "./wake.js";

/** A running worker process's pool. */
export interface Workers {
  workerId: string;
  /** The queues this process serves and the task types it runs (it fetches nothing else). */
  queues: string[];
  types: string[];
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
    | "outcomeFlushMs"
    | "backoffBaseMs"
    | "backoffMaxMs"
    | "shutdownGraceMs"
    | "heartbeatIntervalMs"
    | "pollIntervalMs"
    | "maxLogLinesPerTask"
    | "maxLogBytesPerTask"
    | "maxResultBytes"
    | "leaseMs"
    | "reconcileCron"
    | "reconcileIntervalMs"
    | "retainSucceededMs"
    | "retainFailedMs"
    | "retainCancelledMs"
    | "retentionCron"
    | "retentionBatchSize"
    | "dataDir"
    | "spoolDir"
    | "workerQueues"
    | "priorityAgingMs"
  >;
  logger: Logger;
  metrics?: Metrics;
  /** See ExecuteDeps.abandonAfterAbortMs. */
  abandonAfterAbortMs?: number;
}

/** The graphile-worker cron task that deletes finished tasks past their retention (store/retention.ts). */
export const RETENTION_TASK = "task_retention";

/** Longest a retention pass runs; the next pass continues where it stopped. */
const RETENTION_BUDGET_MS = 60_000;

/** How often each worker process looks for liveness locks left free (a worker process that died). */
const EXIT_WATCH_MS = 250;

/** The channel graphile-worker's add_job and add_jobs notify when they insert jobs. */
const JOBS_INSERT_CHANNEL = "jobs:insert";

/**
 * The fencing timings (docs/design/fencing.md): out-of-process work of an attempt (a shell task's
 * processes) is killed by its watchdog `watchdogMs` after the last lease renewal, and a heartbeat
 * only renews leases if its answer came back within `renewalRttMs` of sending it. Then the old copy
 * is dead before `leaseMs` has passed since the heartbeat the database last recorded, which is the
 * earliest moment a reconciler may retry the task.
 */
export function leaseTiming(config: Pick<Config, "leaseMs" | "heartbeatIntervalMs">): { watchdogMs: number; renewalRttMs: number } {
  const renewalRttMs = Math.floor(config.leaseMs / 8);
  const watchdogMs = Math.floor((config.leaseMs * 5) / 8);
  if (config.heartbeatIntervalMs + renewalRttMs >= watchdogMs) {
    throw new Error(`TASK_HEARTBEAT_MS (${config.heartbeatIntervalMs}) must be well under TASK_LEASE_MS (${config.leaseMs}): at most about half of it`);
  }
  return { watchdogMs, renewalRttMs };
}

/**
 * Delivers the outcomes that workers on this machine spooled and could not record, once those
 * workers are gone (a live worker keeps retrying its own: delivering them too would only race it).
 * Runs at start and with every lost-attempt check, so a worker that died beside a running one has
 * its outcomes delivered within seconds rather than at the next start.
 */
async function deliverSpooled(db: Db, spool: OutcomeSpool, logger: Logger, ownId: string): Promise<void> {
  const entries = (await spool.load()).filter((e) => e.workerId !== ownId);
  if (entries.length === 0) return;
  const live = await liveWorkers(db.kysely, [...new Set(entries.map((e) => e.workerId))]);
  for (const entry of entries.filter((e) => !live.has(e.workerId))) {
    const recorded = await recordOrSpool({ db, spool }, entry, logger.child({ taskId: entry.taskId, attempt: entry.attempt }), undefined, true);
    logger.info({ taskId: entry.taskId, attempt: entry.attempt, recorded: recorded !== undefined }, "delivered a spooled outcome");
  }
}

/**
 * Starts `concurrency` slots running task attempts (claim-loop.ts), graphile-worker for the cron
 * jobs (reconcile, retention), the heartbeat loop (which also fences attempts: one that is no
 * longer ours is aborted), the liveness lock, the cancel listener and the lost-attempt check. Uses
 * its own pool, sized for the concurrency.
 */
export async function startWorkers(options: WorkerOptions): Promise<Workers> {
  const { config } = options;
  const { watchdogMs, renewalRttMs } = leaseTiming(config);
  const workerId = `${os.hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const logger = options.logger.child({ component: "worker", workerId });
  const db = openDb({ connectionString: options.databaseUrl, max: config.workerConcurrency + 4, applicationName: `task-service worker ${workerId}` }, logger);
  // Capabilities: the queues served and the types enabled here. The claim takes only jobs of their
  // task identifiers (run:<queue>:<type>), so a task this process cannot run is never taken by it.
  const queues = [...new Set(config.workerQueues)].sort();
  const types = options.registry.list().filter((p) => !p.disabledReason).map((p) => p.name);
  const gate = new QueueGate(db.kysely, queues, logger);
  const inFlight = new Map<string, InFlightAttempt>();
  const cancel = (taskId: string) => {
    for (const entry of inFlight.values()) {
      if (entry.taskId === taskId) entry.controller.abort(new AttemptAborted("cancel", "cancelled by request"));
    }
  };
  // A pause or resume of a running attempt (PAUSE_CHANNEL payload `<task id>:<status>`).
  const pauseChanged = (payload: string) => {
    const [taskId, status] = payload.split(":");
    for (const entry of inFlight.values()) {
      if (entry.taskId === taskId) entry.pause.set(status === "paused");
    }
  };
  const spool = new OutcomeSpool(config.spoolDir ?? path.join(config.dataDir, "spool"), logger);
  // Outcomes are recorded write-behind, in batches (outcome-writer.ts); `stopSignal` ends their
  // outage waits once the pool has stopped, leaving them in the spool for the next start.
  const outcomes = new OutcomeWriter(db, config.outcomeFlushMs);
  const stopSignal = new AbortController();
  const deps: ExecuteDeps = {
    db,
    registry: options.registry,
    workerId,
    logger,
    backoff: { baseMs: config.backoffBaseMs, maxMs: config.backoffMaxMs },
    maxLogLinesPerTask: config.maxLogLinesPerTask,
    maxLogBytesPerTask: config.maxLogBytesPerTask,
    maxResultBytes: config.maxResultBytes,
    inFlight,
    watchdogMs,
    spool,
    outcomes,
    stopping: stopSignal.signal,
    metrics: options.metrics,
    abandonAfterAbortMs: options.abandonAfterAbortMs,
    queueGate: gate,
  };
  // The types this process serves, as it registers them (task_types): the server validates
  // CreateTask against them and ListTaskTypes shows this worker serving them. A schema ajv cannot
  // compile would be refused by the server at every create: fail at start instead.
  const served = options.registry.list().filter((p) => p.disabledReason === undefined).map(describeTaskType);
  const compiler = schemaCompiler();
  for (const version of served) compileSchema(compiler, version.parameterSchema, version.name);
  const registerTypes = () => registerWorkerTypes(db.kysely, workerId, served);
  const stopSurviving = surviveLostCompletions(logger);

  // The ids graphile-worker locks (cron) jobs under in this process (its pool's and its slot's),
  // reported with every heartbeat so the reconciler can release them if we die.
  const graphileIds = new Set<string>();
  const events = new EventEmitter() as WorkerEvents;
  const slots = new ClaimLoop({
    slots: config.workerConcurrency,
    claim: claimFor(db, workerId, gate, queues, types),
    run: (task, shutdown) => runAttempt(deps, task, shutdown),
    logger,
  });
  // Jobs enqueued for later (delayed tasks, retries after backoff) wake the slots when due; new
  // jobs are announced by graphile-worker's add_job(s) on jobs:insert; the poll catches the rest.
  // Any of these may bring jobs to a limited queue that had none: ask every queue again.
  const jobsMayHaveArrived = () => {
    gate.wake();
    slots.nudge();
  };
  const wake = new WakeSchedule(jobsMayHaveArrived);
  const wakeListener = listen(options.databaseUrl, WAKE_CHANNEL, logger, (payload) => payload.split(",").forEach((at) => wake.add(Number(at))));
  events.on("pool:create", ({ workerPool }) => graphileIds.add(workerPool.id));
  events.on("worker:create", ({ worker }) => graphileIds.add(worker.workerId));
  // One heartbeat renews every attempt the database still says is ours, and fences the rest: an
  // attempt missing from the answer was settled by a reconciler, so it is aborted at once.
  const beatOnce = async () => {
    const snapshot = [...inFlight.values()];
    const sentAt = Date.now();
    try {
      const owned = await heartbeat(db.kysely, workerId, [...graphileIds], snapshot.map((a) => ({ taskId: a.taskId, attempt: a.attempt })), {
        types,
        queues,
        slots: config.workerConcurrency,
        busy: slots.running,
        host: os.hostname(),
        pid: process.pid,
      });
      const fresh = Date.now() - sentAt <= renewalRttMs;
      const mine = new Map(owned.map((o) => [`${o.taskId}:${o.attempt}`, o]));
      for (const entry of snapshot) {
        const o = mine.get(`${entry.taskId}:${entry.attempt}`);
        if (!o) {
          // Unless its outcome was recorded meanwhile (it left inFlight): then it ended on its own.
          if (inFlight.get(`${entry.taskId}:${entry.attempt}`) === entry && !entry.controller.signal.aborted) {
            logger.warn({ taskId: entry.taskId, attempt: entry.attempt }, "aborting an attempt that is no longer this worker's");
            entry.controller.abort(new AttemptAborted("lost", "aborted: the attempt was no longer this worker's (its lease had run out)"));
          }
          continue;
        }
        if (o.cancelRequested) cancel(entry.taskId);
        // A fallback for a missed pause notification; an answer older than the latest one is stale.
        if (o.paused !== entry.pause.paused && entry.pause.changedAt < sentAt) entry.pause.set(o.paused);
        // A slow answer does not renew: the lease the database recorded may be older than it looks.
        if (fresh) entry.renewed.forEach((renew) => renew());
      }
    } catch (err) {
      logger.warn({ err: errorMessage(err) }, "heartbeat failed");
    }
  };
  let beating: Promise<void> | undefined;
  const beatNow = () => void (beating ??= beatOnce().finally(() => (beating = undefined)));
  // The liveness lock first: from now on a reconciler can tell at once if this process dies.
  // After a reconnection the row may have been re-created by the lock (a reconciler judged this
  // process dead and deleted it, with its types): register them again.
  const onRelocked = () => {
    beatNow();
    registerTypes().catch((err: unknown) => logger.warn({ err: errorMessage(err) }, "could not register task types again"));
  };
  const lock = holdWorkerLock(options.databaseUrl, workerId, logger, onRelocked);
  await lock.ready;
  try {
    await retryWhileUnavailable(registerTypes, "registering task types", Number.POSITIVE_INFINITY, logger);
  } catch (err) {
    wake.stop();
    await wakeListener.close();
    await lock.close();
    await db.close();
    stopSurviving();
    throw err;
  }
  const listener = listen(options.databaseUrl, CANCEL_CHANNEL, logger, cancel);
  // A queue paused, resumed or re-limited: read the settings again and fetch at once (a resumed
  // queue's jobs start without waiting for a poll).
  const queueListener = listen(options.databaseUrl, QUEUE_CHANNEL, logger, () => {
    gate.invalidate();
    slots.nudge();
  });
  const pauseListener = listen(options.databaseUrl, PAUSE_CHANNEL, logger, pauseChanged);
  // New jobs (add_job(s) notifies jobs:insert); on (re)connecting, one may have been missed.
  const insertListener = listen(options.databaseUrl, JOBS_INSERT_CHANNEL, logger, jobsMayHaveArrived, jobsMayHaveArrived);
  const poll = setInterval(jobsMayHaveArrived, config.pollIntervalMs);
  const beat = setInterval(beatNow, config.heartbeatIntervalMs);

  // Leases are not judged across this reconciler's own downtime: it counts them from its start.
  const since = await retryWhileUnavailable(() => databaseNow(db.kysely), "starting the reconciler", Number.POSITIVE_INFINITY, logger);
  const judgement = { leaseMs: config.leaseMs, since };
  await deliverSpooled(db, spool, logger, workerId).catch((err: unknown) => logger.error({ err: errorMessage(err) }, "could not deliver spooled outcomes"));
  // One full reconcile pass at start-up, so tasks orphaned while no worker ran are rescued now.
  await reconcile(db.kysely, config.leaseMs, logger, since).catch((err: unknown) => logger.error({ err: errorMessage(err) }, "start-up reconcile failed"));
  let rescuing = false;
  const rescueNow = () => {
    if (rescuing) return;
    rescuing = true;
    // Spooled outcomes of dead workers first, so a real outcome wins over "worker lost".
    deliverSpooled(db, spool, logger, workerId)
      .then(() => rescueLostAttempts(db.kysely, judgement, logger))
      .catch((err: unknown) => logger.warn({ err: errorMessage(err) }, "lost-attempt check failed"))
      .finally(() => (rescuing = false));
  };
  const rescue = config.reconcileIntervalMs > 0 ? setInterval(rescueNow, config.reconcileIntervalMs) : undefined;
  // Between passes, a cheaper look at the liveness locks alone (one small query), so a process that
  // died is rescued within a fraction of a second rather than at the next pass.
  const exitWatch =
    config.reconcileIntervalMs > 0
      ? setInterval(() => {
          if (rescuing) return;
          workersWithFreeLocks(db.kysely).then(
            (free) => free.length > 0 && rescueNow(),
            () => undefined, // the next pass reports database trouble
          );
        }, Math.min(EXIT_WATCH_MS, config.reconcileIntervalMs))
      : undefined;

  let runner: Runner;
  try {
    // A database that goes away while this process starts is waited out, as it is once running.
    runner = await retryWhileUnavailable(() => run({
      pgPool: db.pool,
      // Task attempts run in this process's own slots (ClaimLoop); graphile-worker's one slot runs the cron jobs.
      concurrency: 1,
      noHandleSignals: true,
      pollInterval: config.pollIntervalMs,
      logger: graphileLogger(logger),
      gracefulShutdownAbortTimeout: config.shutdownGraceMs,
      events,
      // jobKey: one pending reconcile job however many worker processes schedule it.
      crontab: [
        `${config.reconcileCron} ${RECONCILE_TASK} ?max=1&jobKey=${RECONCILE_TASK}&jobKeyMode=replace`,
        `${config.retentionCron} ${RETENTION_TASK} ?max=1&jobKey=${RETENTION_TASK}&jobKeyMode=replace`,
      ].join("\n"),
      taskList: {
        [RETENTION_TASK]: async (_payload, helpers) => {
          const policy = { succeededMs: config.retainSucceededMs, failedMs: config.retainFailedMs, cancelledMs: config.retainCancelledMs };
          const result = await deleteExpiredTasks(db.kysely, policy, config.retentionBatchSize, RETENTION_BUDGET_MS, helpers.abortSignal);
          if (result.succeeded + result.failed + result.cancelled > 0) logger.info(result, "retention: deleted finished tasks");
        },
        [RECONCILE_TASK]: async () => {
          const result = await reconcile(db.kysely, config.leaseMs, logger, since);
          const aged = await agePriorities(db.kysely, config.priorityAgingMs);
          logger.debug({ ...result, aged }, "reconcile pass");
        },
      },
    }), "starting graphile-worker", Number.POSITIVE_INFINITY, logger);
  } catch (err) {
    clearInterval(beat);
    clearInterval(rescue);
    clearInterval(exitWatch);
    clearInterval(poll);
    wake.stop();
    await Promise.all([listener.close(), wakeListener.close(), insertListener.close(), queueListener.close(), pauseListener.close()]);
    await lock.close();
    await db.close();
    stopSurviving();
    throw err;
  }
  await beatOnce();
  slots.start();
  logger.info({ concurrency: config.workerConcurrency, queues, types }, "workers started");
  let stopping: Promise<void> | undefined;
  return {
    workerId,
    queues,
    types,
    inFlight: () => slots.running,
    stop: () =>
      (stopping ??= (async () => {
        logger.info({ inFlight: inFlight.size, graceMs: config.shutdownGraceMs }, "stopping workers");
        // The task slots and graphile-worker's cron slot stop together, each within the grace period.
        await Promise.all([
          slots.stop(config.shutdownGraceMs),
          runner.stop().catch((err: unknown) => logger.error({ err: errorMessage(err) }, "worker shutdown reported an error")),
        ]);
        // Every attempt has ended; record what is still waiting for its batch (or spool it if the
        // database is away) before the pool closes.
        stopSignal.abort();
        await outcomes.drained();
        clearInterval(beat);
        clearInterval(rescue);
        clearInterval(exitWatch);
        clearInterval(poll);
        wake.stop();
        await Promise.all([listener.close(), wakeListener.close(), insertListener.close(), queueListener.close(), pauseListener.close()]);
        await unregisterWorker(db.kysely, workerId).catch((err: unknown) => logger.warn({ err: errorMessage(err) }, "could not unregister"));
        await lock.close();
        await beating;
        await db.close();
        stopSurviving();
        logger.info("workers stopped");
      })()),
  };
}
