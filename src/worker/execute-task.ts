import { Backoff, backoffDelayMs, sleep, type BackoffPolicy } from "../backoff.js";
import { errorMessage, isDatabaseUnavailable, InvalidArgumentError, PermanentTaskError, TaskTypeDisabledError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import type { PluginRegistry } from "../plugins/registry.js";
import type { Plugin } from "../plugins/types.js";
import { afterAttempt, recordOutcome, type AttemptOutcome } from "../store/lifecycle/index.js";
import { OUTAGE_BACKOFF, type Db } from "../store/db.js";
import type { TaskRow } from "../store/schema.js";
import { formatDuration } from "../duration.js";
import { endSpan, startAttemptTrace } from "../tracing.js";
import { AttemptPause, pausableTimeout } from "./attempt-pause.js";
import type { QueueGate } from "./queue-gate.js";
import { DEFAULT_MAX_LOG_BYTES, TaskLogSink } from "./log-sink.js";
import { AttemptProgress, ProgressWriter } from "./progress.js";
import type { OutcomeSpool, SpooledOutcome } from "./outcome-spool.js";
import type { OutcomeWriter } from "./outcome-writer.js";
import { DEFAULT_MAX_RESULT_BYTES, recordOrFailWithReason, storableResult } from "./result.js";
import { AttemptFiles, type AttemptFilesDeps } from "./attempt-files.js";

/** Why an attempt was aborted; carried as the AbortSignal's reason. */
export class AttemptAborted extends Error {
  override name = "AttemptAborted";
  constructor(
    /** `lost`: the attempt is no longer this worker's (a reconciler settled it): fencing. */
    readonly kind: "timeout" | "cancel" | "shutdown" | "lost",
    message: string,
  ) {
    super(message);
  }
}

/** An attempt running in this process, as heartbeats and cancel notifications see it. */
export interface InFlightAttempt {
  taskId: string;
  attempt: number;
  controller: AbortController;
  /** Called at each heartbeat that renewed this attempt's lease. */
  renewed: Set<() => void>;
  /** Whether the attempt is paused (PauseTask), as notifications and heartbeats report it. */
  pause: AttemptPause;
}

/** What executing an attempt needs. */
export interface ExecuteDeps {
  db: Db;
  registry: PluginRegistry<Plugin>;
  workerId: string;
  logger: Logger;
  backoff: BackoffPolicy;
  maxLogLinesPerTask: number;
  /** Output kept per attempt, in characters (default 16 MiB). */
  maxLogBytesPerTask?: number;
  /** Largest result stored (JSON bytes); larger ones are replaced by a note. */
  maxResultBytes?: number;
  /**
   * Attempts running in this process, by `taskId:attempt`: a retry this worker claimed must not hide
   * the older attempt it replaces from the heartbeat that fences it.
   */
  inFlight: Map<string, InFlightAttempt>;
  /** How long an attempt's out-of-process work may go without a lease renewal (see fencing.md). */
  watchdogMs: number;
  /** Where outcomes wait while the database is unreachable. */
  spool: OutcomeSpool;
  /**
   * Write-behind recording (outcome-writer.ts): when set, executeTask returns once the outcome is
   * handed over, and the outcome is recorded with the next batch. Unset: recorded before returning.
   */
  outcomes?: OutcomeWriter;
  /** Fires when the worker process stops: a write-behind outcome then stops waiting out an outage (it stays spooled). */
  stopping?: AbortSignal;
  metrics?: Metrics;
  /** This process's view of limited and held queues (told when an attempt of a limited queue ended). */
  queueGate?: QueueGate;
  /**
   * How long a plugin may take to settle after its signal fired (timeout, cancel, shutdown) before
   * the attempt ends without it: a plugin that ignores its signal or never resolves must not hold
   * a slot for ever. Default ABANDON_AFTER_ABORT_MS.
   */
  abandonAfterAbortMs?: number;
  /** Where task files are stored and their caps; unset: plugins get no `files` (ctx.files). */
  files?: AttemptFilesDeps;
  /** At most one progress write per task per this long (default PROGRESS_INTERVAL_MS, 1 s). */
  progressIntervalMs?: number;
  /** Batches the process's progress writes; one per attempt when absent. */
  progress?: ProgressWriter;
}

/** Default of ExecuteDeps.abandonAfterAbortMs: longer than the shell plugin's default kill grace (5 s). */
export const ABANDON_AFTER_ABORT_MS = 10_000;

/**
 * The plugin's own promise, unless it is still pending `graceMs` after `signal` fired: then the
 * attempt ends with the signal's reason and the plugin's work is abandoned (it may still finish in
 * the background; execution is at-least-once).
 */
function settleOrAbandon<T>(signal: AbortSignal, work: Promise<T>, graceMs: number, logger: Logger): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      timer = setTimeout(() => {
        logger.warn({ graceMs }, "the plugin did not stop after its signal fired: the attempt ends without it");
        reject(signal.reason);
      }, graceMs);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
    };
    work.then(
      (value) => (done(), resolve(value)),
      (err: unknown) => (done(), reject(err)),
    );
  });
}

/**
 * Runs one claimed attempt (RUNNING and this worker's, see claim-loop.ts): its plugin with a
 * timeout, an AbortSignal and pause, then its outcome, recorded guarded (write-behind unless its
 * queue is limited). Returns when the slot is free again.
 *
 * Be careful about what can throw here: the task is RUNNING and owned by this worker, so every
 * path must reach recordOutcome, or leave the task for the reconciler to rescue.
 */
export async function runAttempt(deps: ExecuteDeps, task: TaskRow, shutdown: AbortSignal): Promise<void> {
  const logger = deps.logger.child({ taskId: task.id, attempt: task.attempts });
  const limitedQueue = deps.queueGate?.isLimited(task.queue) ?? false;
  try {
    await runClaimed(deps, task, logger, shutdown);
  } finally {
    // A slot of a limited queue is free again: read the held queues afresh before the next claim.
    if (limitedQueue) deps.queueGate?.invalidate();
  }
}

/** Runs a claimed attempt and records its outcome (see runAttempt). */
async function runClaimed(deps: ExecuteDeps, task: TaskRow, logger: Logger, shutdown: AbortSignal): Promise<void> {
  const { id: taskId, attempts: attempt } = task;
  const controller = new AbortController();
  const entry: InFlightAttempt = { taskId, attempt, controller, renewed: new Set(), pause: new AttemptPause() };
  const key = `${taskId}:${attempt}`;
  deps.inFlight.set(key, entry);
  const lease = {
    watchdogMs: deps.watchdogMs,
    onRenew: (listener: () => void) => (entry.renewed.add(listener), () => void entry.renewed.delete(listener)),
  };
  const onShutdown = () => controller.abort(new AttemptAborted("shutdown", "interrupted: the worker shut down"));
  shutdown.addEventListener("abort", onShutdown, { once: true });
  if (shutdown.aborted) onShutdown();
  // The timeout does not run while the attempt is paused.
  const stopTimer = pausableTimeout(task.timeout_ms, entry.pause, () =>
    controller.abort(new AttemptAborted("timeout", `timed out after ${formatDuration(task.timeout_ms)}`)),
  );
  const sink = new TaskLogSink(
    deps.db.kysely,
    taskId,
    attempt,
    { maxLines: deps.maxLogLinesPerTask, maxBytes: deps.maxLogBytesPerTask ?? DEFAULT_MAX_LOG_BYTES },
    logger,
  );
  const files = deps.files ? new AttemptFiles(deps.files, taskId, attempt) : undefined;
  // Throttled to about one write a second; its last report is stored before the outcome is recorded.
  const progress = new AttemptProgress(deps.progress ?? new ProgressWriter(deps.db), taskId, attempt, logger, deps.progressIntervalMs);
  let progressStored: Promise<void> = Promise.resolve();
  observeCreatedToStarted(deps.metrics, task);
  // The attempt's span, `process <queue>`, linked to the create's traceparent; ended once the outcome is recorded.
  const traced = startAttemptTrace(task);
  let outcome: AttemptOutcome;
  try {
    const plugin = deps.registry.resolve(task.type);
    const params = deps.registry.parse(plugin, task.parameters);
    logger.debug({ type: task.type }, "attempt started");
    const stopDurationTimer = deps.metrics?.attemptDuration.startTimer({ type: task.type });
    deps.metrics?.attemptsInFlight.inc();
    const pause = plugin.pausable ? entry.pause : undefined;
    // Promise.resolve().then: a plugin that throws synchronously (or returns a non-promise) is handled like one that rejects.
    const runSpan = traced.child(`run ${task.type}`, { "task.type": task.type });
    const traceparent = traced.traceparentOf(runSpan);
    const running = Promise.resolve().then(() => plugin.run(params, {
        signal: controller.signal,
        taskId,
        attempt,
        logger,
        output: sink,
        lease,
        pause,
        traceparent,
        progress: (fraction, message) => progress.report(fraction, message),
        files,
      }));
    const result = await settleOrAbandon(controller.signal, running, deps.abandonAfterAbortMs ?? ABANDON_AFTER_ABORT_MS, logger).then(
      (value) => (endSpan(runSpan), value),
      (err: unknown) => {
        endSpan(runSpan, controller.signal.aborted ? controller.signal.reason : err);
        throw err;
      },
    ).finally(() => {
      stopDurationTimer?.();
      deps.metrics?.attemptsInFlight.dec();
    });
    // Outputs are stored before the success is recorded: a task seen SUCCEEDED has its files. A
    // worker killed meanwhile leaves them invisible (store/files.ts), and the retry makes its own.
    const stored = await files?.store(sink);
    if (stored?.length) logger.debug({ files: stored.length }, "outputs stored");
    outcome = afterAttempt(task, { kind: "succeeded", result: storableResult(result ?? {}, deps.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES) });
  } catch (err) {
    outcome = failureOutcome(deps, task, controller.signal.aborted ? controller.signal.reason : err);
  } finally {
    stopTimer();
    shutdown.removeEventListener("abort", onShutdown);
    entry.renewed.clear();
    entry.pause.clear();
    await files?.cleanup().catch((err: unknown) => logger.warn({ err: errorMessage(err) }, "could not remove the attempt's file directories"));
    await sink.close();
    // Not awaited here: the slot is free before the last report is stored (settle awaits it).
    progressStored = progress.close();
  }
  // The attempt stays in flight until its outcome is recorded, so heartbeats keep its lease while
  // the database is away and just after it returns (the outcome is still on its way). An outcome the
  // database refuses for another reason is replaced by the failure that says why (`final`).
  // Not AbortSignal.any: both signals live as long as the process, and each dependent signal made
  // from them would stay reachable from them, one per attempt (a leak the size of the task count).
  const stopping = deps.stopping;
  const stop = stopping ? { get aborted() { return shutdown.aborted || stopping.aborted; } } : shutdown;
  const settle = async () => {
    const recordSpan = traced.child("record outcome", { "task.outcome": outcome.kind });
    let failed: unknown;
    try {
      await settleTraced();
    } catch (err) {
      failed = err;
      throw err;
    } finally {
      endSpan(recordSpan, failed);
      traced.end(failed ?? ("error" in outcome ? outcome.error : undefined));
    }
  };
  const settleTraced = async () => {
    // The last progress report lands before the outcome (it never fails: errors are logged).
    await progressStored;
    const { recorded, outcome: final } = await recordOrFailWithReason(
      (o) => recordOrSpool(deps, { taskId, attempt, workerId: deps.workerId, outcome: o }, logger, stop),
      outcome,
      attempt,
      logger,
    ).finally(() => {
      deps.inFlight.delete(key);
    });
    deps.metrics?.attempts.inc({ type: task.type, outcome: final.kind });
    // Successes are the bulk and are in the history anyway; what went wrong is worth a line.
    if (recorded) logger[final.kind === "succeeded" ? "debug" : "info"]({ status: recorded.status }, final.details);
    else logger.warn({ outcome: final.kind }, "outcome not recorded: the task was already settled by someone else");
  };
  // A limited queue's slot frees only when the outcome is recorded (its claim guard counts RUNNING
  // tasks), so its outcomes are recorded before the slot is given back, not behind it.
  if (!deps.outcomes || deps.queueGate?.isLimited(task.queue)) return settle();
  // Write-behind: the slot is free now; the outcome goes with the next batch. If it cannot be
  // recorded at all, the attempt has left the in-flight set, so its lease runs out and the
  // reconciler settles it as lost (the at-least-once case), rather than this worker guessing.
  deps.outcomes.track(settle().catch((err: unknown) => logger.error({ err: errorMessage(err) }, "could not record the attempt's outcome; the reconciler will settle it")));
}

/**
 * How long the claimed attempt waited after it became due: from the later of created_at and run_at
 * (a delay, or a retry's backoff, is not waiting) to started_at, all three on the database's clock
 * (the claim sets started_at), so a worker's clock does not skew it.
 */
function observeCreatedToStarted(metrics: Metrics | undefined, task: TaskRow): void {
  if (!metrics || !task.started_at) return;
  const due = Math.max(task.created_at.getTime(), task.run_at.getTime());
  metrics.createdToStarted.observe({ queue: task.queue, type: task.type }, Math.max(0, task.started_at.getTime() - due) / 1000);
}

/**
 * Records an outcome, keeping it (in memory and in the spool on disk) and retrying for as long as
 * the database is unreachable: a worker neither exits nor loses an outcome because the database is
 * away. Only a shutdown ends the wait; the outcome then stays in the spool, and the next worker
 * started on this machine delivers it.
 */
export async function recordOrSpool(
  deps: Pick<ExecuteDeps, "db" | "spool" | "outcomes">,
  entry: SpooledOutcome,
  logger: Logger,
  /** Ends an outage wait (the outcome stays spooled); only its `aborted` is read. */
  shutdown?: Pick<AbortSignal, "aborted">,
  /** The outcome comes from the spool (a previous worker's): its file goes once it is delivered. */
  spooled = false,
): Promise<TaskRow | undefined> {
  const backoff = new Backoff(OUTAGE_BACKOFF);
  for (;;) {
    try {
      const recorded = await (deps.outcomes ? deps.outcomes.record(entry) : recordOutcome(deps.db, entry.taskId, entry.attempt, entry.workerId, entry.outcome));
      if (spooled) await deps.spool.remove(entry);
      return recorded;
    } catch (err) {
      if (!isDatabaseUnavailable(err)) {
        if (spooled) await deps.spool.remove(entry);
        throw err;
      }
      if (!spooled) {
        spooled = true;
        await deps.spool.save(entry);
      }
      if (shutdown?.aborted) {
        logger.warn({ err: errorMessage(err) }, "database unavailable at shutdown: the outcome stays in the spool for the next start");
        return undefined;
      }
      const retryInMs = backoff.failed();
      logger.warn({ err: errorMessage(err), retryInMs }, "database unavailable while recording an outcome; retrying");
      await sleep(retryInMs);
    }
  }
}

/**
 * What the worker saw of a failed or aborted attempt (cancelled, or failed: permanently or with
 * the backoff before a retry); afterAttempt (store/lifecycle) decides what it becomes.
 */
function failureOutcome(deps: ExecuteDeps, task: TaskRow, err: unknown): AttemptOutcome {
  if (err instanceof AttemptAborted && err.kind === "cancel") return afterAttempt(task, { kind: "cancelled" });
  const permanent = err instanceof PermanentTaskError || err instanceof InvalidArgumentError || err instanceof TaskTypeDisabledError;
  // A shutdown is not the task's fault: retry at once elsewhere instead of backing off.
  const policy = task.backoff_base_ms !== null && task.backoff_max_ms !== null ? { baseMs: task.backoff_base_ms, maxMs: task.backoff_max_ms } : deps.backoff;
  const delay = err instanceof AttemptAborted && err.kind === "shutdown" ? 0 : backoffDelayMs({ ...policy, jitter: true }, task.attempts);
  return afterAttempt(task, { kind: "failed", error: errorMessage(err), permanent, retryInMs: delay });
}
