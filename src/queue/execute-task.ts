import { errorMessage, InvalidArgumentError, PermanentTaskError, TaskTypeDisabledError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import type { PluginRegistry } from "../plugins/registry.js";
import type { Plugin } from "../plugins/types.js";
import { claimAttempt, recordOutcome, type AttemptOutcome } from "../store/attempts.js";
import { retryWhileUnavailable, type Db } from "../store/db.js";
import type { TaskRow } from "../store/schema.js";
import { formatDuration } from "../duration.js";
import { backoffDelayMs, type BackoffPolicy } from "./backoff.js";
import type { RunTaskPayload } from "./jobs.js";
import { TaskLogSink } from "./log-sink.js";
import { DEFAULT_MAX_RESULT_BYTES, recordOrFailWithReason, storableResult } from "./result.js";

/**
 * If PostgreSQL stays down past this while an outcome waits to be recorded, the error propagates;
 * the task stays RUNNING with a stale heartbeat and the reconciler settles it.
 */
const RECORD_PATIENCE_MS = 60_000;

/** Why an attempt was aborted; carried as the AbortSignal's reason. */
export class AttemptAborted extends Error {
  override name = "AttemptAborted";
  constructor(
    readonly kind: "timeout" | "cancel" | "shutdown",
    message: string,
  ) {
    super(message);
  }
}

/** What executing an attempt needs. */
export interface ExecuteDeps {
  db: Db;
  registry: PluginRegistry<Plugin>;
  workerId: string;
  logger: Logger;
  backoff: BackoffPolicy;
  maxLogLinesPerTask: number;
  /** Largest result stored (JSON bytes); larger ones are replaced by a note. */
  maxResultBytes?: number;
  /** Attempts running in this process, by task id: heartbeats and cancel notifications use it. */
  inFlight: Map<string, AbortController>;
  metrics?: Metrics;
}

/** Checks a job payload; anything else is a job we did not write and ignore. */
export function parsePayload(payload: unknown): RunTaskPayload | undefined {
  const p = payload as Partial<RunTaskPayload> | null;
  if (!p || typeof p.taskId !== "string" || !/^\d+$/.test(p.taskId)) return undefined;
  if (typeof p.attempt !== "number" || !Number.isInteger(p.attempt) || p.attempt < 1) return undefined;
  return { taskId: p.taskId, attempt: p.attempt };
}

/**
 * Runs one attempt of one task: claim it (guarded), run its plugin with a timeout and an
 * AbortSignal, record the outcome (guarded). A job that is stale (its attempt already ran, the task
 * was cancelled or retried) claims nothing and does nothing.
 *
 * Be careful about what can throw here: once the task is claimed it is RUNNING and owned by this
 * worker, so every path must reach recordOutcome, or leave the task for the reconciler to rescue.
 */
export async function executeTask(deps: ExecuteDeps, payload: RunTaskPayload, jobId: string, shutdown: AbortSignal): Promise<void> {
  const { taskId, attempt } = payload;
  const logger = deps.logger.child({ taskId, attempt });
  const task = await claimAttempt(deps.db, taskId, attempt, deps.workerId, jobId);
  if (!task) {
    logger.debug("stale or duplicate job: task is not waiting for this attempt");
    return;
  }
  const controller = new AbortController();
  deps.inFlight.set(taskId, controller);
  const onShutdown = () => controller.abort(new AttemptAborted("shutdown", "interrupted: the worker shut down"));
  shutdown.addEventListener("abort", onShutdown, { once: true });
  if (shutdown.aborted) onShutdown();
  const timer = setTimeout(() => controller.abort(new AttemptAborted("timeout", `timed out after ${formatDuration(task.timeout_ms)}`)), task.timeout_ms);
  const sink = new TaskLogSink(deps.db.kysely, taskId, attempt, deps.maxLogLinesPerTask, logger);
  let outcome: AttemptOutcome;
  try {
    const plugin = deps.registry.resolve(task.type);
    const params = deps.registry.parse(plugin, task.parameters);
    logger.debug({ type: task.type }, "attempt started");
    const stopTimer = deps.metrics?.attemptDuration.startTimer({ type: task.type });
    deps.metrics?.attemptsInFlight.inc();
    const result = await plugin.run(params, { signal: controller.signal, taskId, attempt, logger, output: sink }).finally(() => {
      stopTimer?.();
      deps.metrics?.attemptsInFlight.dec();
    });
    outcome = { kind: "succeeded", result: storableResult(result ?? {}, deps.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES), details: `attempt ${attempt} succeeded` };
  } catch (err) {
    outcome = failureOutcome(deps, task, controller.signal.aborted ? controller.signal.reason : err);
  } finally {
    clearTimeout(timer);
    shutdown.removeEventListener("abort", onShutdown);
    // A reconciler may have re-enqueued this task and a newer attempt may be running here already.
    if (deps.inFlight.get(taskId) === controller) deps.inFlight.delete(taskId);
    await sink.close();
  }
  // Recorded under `final`: a refused outcome is replaced by the failure that says why.
  const { recorded, outcome: final } = await recordOrFailWithReason(
    (o) => retryWhileUnavailable(() => recordOutcome(deps.db, task.id, task.attempts, deps.workerId, o), "recording an outcome", RECORD_PATIENCE_MS, logger),
    outcome,
    attempt,
    logger,
  );
  outcome = final;
  deps.metrics?.attempts.inc({ type: task.type, outcome: outcome.kind });
  // Successes are the bulk and are in the history anyway; what went wrong is worth a line.
  if (recorded) logger[outcome.kind === "succeeded" ? "debug" : "info"]({ status: recorded.status }, outcome.details);
  else logger.warn({ outcome: outcome.kind }, "outcome not recorded: the task was already settled by someone else");
}

/** Decides what a failed or aborted attempt becomes under the task's retry policy. */
function failureOutcome(deps: ExecuteDeps, task: TaskRow, err: unknown): AttemptOutcome {
  const attempt = task.attempts;
  const message = errorMessage(err);
  if (err instanceof AttemptAborted && err.kind === "cancel") {
    return { kind: "cancelled", details: `attempt ${attempt} cancelled by request while running` };
  }
  const permanent = err instanceof PermanentTaskError || err instanceof InvalidArgumentError || err instanceof TaskTypeDisabledError;
  if (permanent) return { kind: "failed", error: message, details: `attempt ${attempt} failed permanently: ${message}` };
  if (attempt >= task.max_attempts) {
    return { kind: "failed", error: message, details: `attempt ${attempt} failed: ${message}; giving up after ${attempt} attempt${attempt === 1 ? "" : "s"}` };
  }
  // A shutdown is not the task's fault: retry at once elsewhere instead of backing off.
  const delay = err instanceof AttemptAborted && err.kind === "shutdown" ? 0 : backoffDelayMs(deps.backoff, attempt);
  return {
    kind: "retrying",
    error: message,
    retryAt: new Date(Date.now() + delay),
    details: `attempt ${attempt} failed: ${message}; ${delay === 0 ? "retrying now" : `retrying in ${formatDuration(delay)}`}`,
  };
}
