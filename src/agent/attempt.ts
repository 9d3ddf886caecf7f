/**
 * Runs one attempt on a remote agent (issue 26): the plugin with its parameters, a timeout that
 * stops while the attempt is paused, an AbortSignal (timeout, cancel, the agent's shutdown, fencing)
 * and the attempt's lease; output lines go to `output` (the agent's log batches). What comes back is
 * how the attempt ended, as the agent reports it (AgentService ReportOutcomes); the control plane
 * decides what that makes of the task (retry or not). No database: the plugin's own settings
 * (run_query targets, SMTP, outbox) are the agent's.
 */
import { create } from "@bufbuild/protobuf";
import { errorMessage, InvalidArgumentError, PermanentTaskError, TaskTypeDisabledError } from "../errors.js";
import { AttemptResult_Kind, AttemptResultSchema, type AttemptResult, type AttemptStart } from "../gen/task/v1/agent_pb.js";
import type { Logger } from "../logger.js";
import type { PluginRegistry } from "../plugins/registry.js";
import type { AttemptLease, LogSink, Plugin } from "../plugins/types.js";
import { formatDuration } from "../duration.js";
import { AttemptPause, pausableTimeout } from "../worker/attempt-pause.js";
import { AttemptAborted } from "../worker/execute-task.js";

/** An attempt running on the agent. */
export interface AgentAttempt {
  start: AttemptStart;
  controller: AbortController;
  pause: AttemptPause;
  /** Renewal listeners (the plugin's lease); called at each heartbeat that renewed the attempt. */
  renewed: Set<() => void>;
  /** When the attempt was last renewed (or received), on the agent's clock. */
  renewedAt: number;
  /** A heartbeat renewed it: the server knows the agent has it (until then it may take it back). */
  acked: boolean;
}

/** How long a plugin may take to stop after its signal fired before the attempt ends without it. */
const ABANDON_AFTER_ABORT_MS = 10_000;

/**
 * Runs the attempt; returns its result to report, or undefined when it was fenced (no longer the
 * agent's: nothing to report, the control plane already settled it).
 */
export async function runAgentAttempt(
  registry: PluginRegistry<Plugin>,
  attempt: AgentAttempt,
  output: LogSink,
  watchdogMs: number,
  logger: Logger,
): Promise<AttemptResult | undefined> {
  const { start, controller } = attempt;
  const ref = { taskId: start.taskId, attempt: start.attempt };
  const stopTimer = pausableTimeout(Number(start.timeoutMs), attempt.pause, () =>
    controller.abort(new AttemptAborted("timeout", `timed out after ${formatDuration(Number(start.timeoutMs))}`)),
  );
  const lease: AttemptLease = { watchdogMs, onRenew: (listener) => (attempt.renewed.add(listener), () => void attempt.renewed.delete(listener)) };
  try {
    const plugin = registry.resolve(start.type);
    const params = registry.parse(plugin, JSON.parse(start.parametersJson || "{}"));
    const running = Promise.resolve().then(() =>
      plugin.run(params, {
        signal: controller.signal,
        taskId: start.taskId.toString(),
        attempt: start.attempt,
        logger,
        output,
        lease,
        pause: plugin.pausable ? attempt.pause : undefined,
      }),
    );
    const result = await settleOrAbandon(controller.signal, running);
    return create(AttemptResultSchema, { ...ref, kind: AttemptResult_Kind.SUCCEEDED, resultJson: JSON.stringify(result ?? {}) });
  } catch (err) {
    const reason: unknown = controller.signal.aborted ? controller.signal.reason : err;
    if (reason instanceof AttemptAborted) {
      switch (reason.kind) {
        case "lost":
          logger.warn("the attempt is no longer this agent's: stopped, nothing reported");
          return undefined;
        case "cancel":
          return create(AttemptResultSchema, { ...ref, kind: AttemptResult_Kind.CANCELLED });
        case "timeout":
          return create(AttemptResultSchema, { ...ref, kind: AttemptResult_Kind.TIMED_OUT, error: reason.message });
        case "shutdown":
          return create(AttemptResultSchema, { ...ref, kind: AttemptResult_Kind.INTERRUPTED, error: reason.message });
      }
    }
    const permanent = reason instanceof PermanentTaskError || reason instanceof InvalidArgumentError || reason instanceof TaskTypeDisabledError;
    return create(AttemptResultSchema, { ...ref, kind: AttemptResult_Kind.FAILED, error: errorMessage(reason), permanent });
  } finally {
    stopTimer();
    attempt.renewed.clear();
    attempt.pause.clear();
  }
}

/** The plugin's promise, unless it is still pending ABANDON_AFTER_ABORT_MS after `signal` fired. */
function settleOrAbandon<T>(signal: AbortSignal, work: Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => (timer = setTimeout(() => reject(signal.reason), ABANDON_AFTER_ABORT_MS));
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (v) => (clearTimeout(timer), resolve(v)),
      (e: unknown) => (clearTimeout(timer), reject(e)),
    );
  });
}
