import { randomBytes } from "node:crypto";
import os from "node:os";
import path from "node:path";
import type { Config } from "../config.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import { compileSchema, describeTaskType, schemaCompiler } from "../plugins/catalog.js";
import type { PluginRegistry } from "../plugins/registry.js";
import type { Plugin } from "../plugins/types.js";
import { openDb, type Db } from "../store/db.js";
import { openListener, type Listener } from "../store/listen.js";
import { Claiming } from "./claiming.js";
import type { InFlightAttempt } from "./execute-task.js";
import { Fencing } from "./fencing.js";
import { surviveLostCompletions } from "./lost-completions.js";
import { Maintenance } from "./maintenance.js";
import { OutcomeSpool } from "./outcome-spool.js";
import { Rescue } from "./rescue.js";
import { Expiry } from "./expiry.js";

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
  /** The process's listener (notifications: cancel, pause, wake-ups, new jobs); without it the workers open their own. */
  listener?: Listener;
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
    | "retainExpiredMs"
    | "retentionCron"
    | "retentionBatchSize"
    | "auditRetentionMs"
    | "dataDir"
    | "spoolDir"
    | "workerQueues"
    | "priorityAgingMs"
  > &
    Partial<Pick<Config, "workerLabels" | "filesMaxTaskBytes" | "filesMaxTotalBytes" | "uploadTtlMs">>;
  logger: Logger;
  metrics?: Metrics;
  /** See ExecuteDeps.abandonAfterAbortMs. */
  abandonAfterAbortMs?: number;
}

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


/** One part of a worker process, with one job (claiming, fencing, rescue, maintenance). */
export interface WorkerPart {
  start(): Promise<void>;
  /** Safe to call on a part whose start failed or never ran. */
  stop(): Promise<void>;
}

/** What every part of a worker process shares. */
export interface WorkerContext {
  workerId: string;
  databaseUrl: string;
  db: Db;
  /** The process's one LISTEN connection. */
  listener: Listener;
  registry: PluginRegistry<Plugin>;
  config: WorkerOptions["config"];
  logger: Logger;
  metrics?: Metrics;
  /** The queues this process serves and the task types it runs. */
  queues: string[];
  types: string[];
  /** Its labels (sorted "key=value" pairs): it claims tasks whose labels are all among them. */
  labels: string[];
  /**
   * Attempts running in this process, by `taskId:attempt`: claiming adds them, fencing renews,
   * aborts, cancels and pauses them.
   */
  inFlight: Map<string, InFlightAttempt>;
  /** Where outcomes wait while the database is unreachable (claiming writes, rescue delivers a dead worker's). */
  spool: OutcomeSpool;
}

/**
 * Starts a worker process's parts, each with one job: fencing (liveness lock, heartbeat, abort of
 * attempts no longer ours), rescue (lost attempts, spooled outcomes), expiry (tasks past their deadline), maintenance (graphile-worker's
 * cron jobs: reconcile, retention) and, once those are up, claiming (the slots running attempts).
 * They stop in reverse order, so the slots drain while heartbeats still renew their leases. Uses
 * its own pool, sized for the concurrency.
 */
export async function startWorkers(options: WorkerOptions): Promise<Workers> {
  const { config } = options;
  const { watchdogMs, renewalRttMs } = leaseTiming(config);
  const workerId = `${os.hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const logger = options.logger.child({ component: "worker", workerId });
  // The types this process serves, as it registers them (task_types): the server validates
  // CreateTask against them and ListTaskTypes shows this worker serving them. A schema ajv cannot
  // compile would be refused by the server at every create: fail at start instead.
  const enabled = options.registry.list().filter((p) => p.disabledReason === undefined);
  const served = enabled.map(describeTaskType);
  const compiler = schemaCompiler();
  for (const version of served) compileSchema(compiler, version.parameterSchema, version.name);
  const ownListener = options.listener ? undefined : openListener(options.databaseUrl, logger);
  const db = openDb({ connectionString: options.databaseUrl, max: config.workerConcurrency + 4, applicationName: `task-service worker ${workerId}` }, logger);
  // Until the pool has closed: a completion graphile-worker did not await may still fail on it.
  const stopSurviving = surviveLostCompletions(logger);
  const ctx: WorkerContext = {
    workerId,
    databaseUrl: options.databaseUrl,
    db,
    listener: options.listener ?? ownListener!,
    registry: options.registry,
    config,
    logger,
    metrics: options.metrics,
    // Capabilities: the claim takes only jobs of their task identifiers (run:<queue>:<type>), so a
    // task this process cannot run is never taken by it.
    queues: [...new Set(config.workerQueues)].sort(),
    types: enabled.map((p) => p.name),
    labels: config.workerLabels ?? [],
    inFlight: new Map(),
    spool: new OutcomeSpool(config.spoolDir ?? path.join(config.dataDir, "spool"), logger),
  };
  const claiming = new Claiming(ctx, { watchdogMs, abandonAfterAbortMs: options.abandonAfterAbortMs });
  const rescue = new Rescue(ctx);
  const expiry = new Expiry(ctx);
  // A new graphile-worker id is reported at once, so a reconciler can release its locks if this process dies.
  const maintenance = new Maintenance(ctx, { reconcile: () => rescue.reconcileAll(), idsChanged: () => fencing.beatNow() });
  const fencing = new Fencing(ctx, { served, renewalRttMs, busy: () => claiming.running, graphileIds: () => [...maintenance.graphileIds] });

  const started: WorkerPart[] = [];
  const stopAll = async () => {
    for (const part of started.reverse()) await part.stop();
    await ownListener?.close();
    await db.close();
    stopSurviving();
  };
  try {
    for (const part of [fencing, rescue, expiry, together(maintenance, claiming)]) {
      started.push(part);
      await part.start();
    }
  } catch (err) {
    await stopAll();
    throw err;
  }
  logger.info({ concurrency: config.workerConcurrency, queues: ctx.queues, types: ctx.types, labels: ctx.labels }, "workers started");
  let stopping: Promise<void> | undefined;
  return {
    workerId,
    queues: ctx.queues,
    types: ctx.types,
    inFlight: () => claiming.running,
    stop: () =>
      (stopping ??= (async () => {
        logger.info({ inFlight: ctx.inFlight.size, graceMs: config.shutdownGraceMs }, "stopping workers");
        await stopAll();
        logger.info("workers stopped");
      })()),
  };
}

/**
 * Parts started one after the other and stopped together: graphile-worker's cron slot and the task
 * slots each drain within the grace period, and stopping them in turn would wait for it twice.
 */
function together(...parts: WorkerPart[]): WorkerPart {
  return {
    async start() {
      for (const part of parts) await part.start();
    },
    async stop() {
      await Promise.all(parts.map((part) => part.stop()));
    },
  };
}
