import { sql } from "kysely";
import type { TaskStatus } from "../schema.js";
import { formatDuration } from "../../duration.js";

/**
 * The states of a task and the decisions that depend on them alone (no database): which statuses
 * are finished, which rows wait for an attempt or are in one, and what an attempt's ending becomes
 * under the task's retry policy. The statements that apply these live beside this file
 * (lifecycle/*.ts); nothing else writes a task's status or its history.
 */

export { taskStatuses, type TaskStatus } from "../schema.js";

/** Statuses a task never leaves on its own (it may be retried or deleted): the ONE list of them. */
export const FINISHED_STATUSES = ["succeeded", "failed", "cancelled", "expired"] as const satisfies readonly TaskStatus[];
export type FinishedStatus = (typeof FINISHED_STATUSES)[number];

/** Whether a status is finished (FINISHED_STATUSES). */
export function isFinished(status: TaskStatus): status is FinishedStatus {
  return (FINISHED_STATUSES as readonly TaskStatus[]).includes(status);
}

/**
 * `('succeeded', 'failed', 'cancelled', 'expired')` as literal SQL (not bound), so a condition on it
 * matches the partial indexes whose predicate spells the same list (migration 0028).
 */
export const FINISHED_LIST = sql.raw(`(${FINISHED_STATUSES.map((s) => `'${s}'`).join(", ")})`);

/** SQL condition over tasks: finished. */
export const FINISHED = sql<boolean>`(status in ${FINISHED_LIST})`;

/** SQL condition over tasks: not finished (waiting, running, or paused). */
export const UNFINISHED = sql<boolean>`(status not in ${FINISHED_LIST})`;

/**
 * A task that waits for its next attempt: QUEUED, RETRYING, or PAUSED while waiting (held: no
 * attempt of it is running). SQL condition over tasks.
 */
export const WAITING = sql<boolean>`(status in ('queued', 'retrying') or (status = 'paused' and worker_id is null))`;

/** A task with an attempt in progress: RUNNING, or PAUSED mid-attempt (its worker still owns it). */
export const IN_ATTEMPT = sql<boolean>`(status = 'running' or (status = 'paused' and worker_id is not null))`;

/** SQL condition over tasks: waiting for an attempt to start, and no cancel pending (what a claim or a hold may take). */
export const STARTABLE = sql<boolean>`(status in ('queued', 'retrying') and cancel_requested_at is null)`;

/** How an attempt ended, as the store records it (the worker's report, after afterAttempt). */
export type AttemptOutcome =
  | { kind: "succeeded"; result: Record<string, unknown>; details: string }
  | { kind: "retrying"; error: string; details: string; retryAt: Date }
  | { kind: "failed"; error: string; details: string }
  | { kind: "cancelled"; details: string };

/** How an attempt ended, as the worker saw it, before the retry policy is applied. */
export type AttemptEnding =
  | { kind: "succeeded"; result: Record<string, unknown> }
  /** `permanent`: do not retry (PermanentTaskError, invalid parameters, a disabled type). `retryInMs`: the backoff before the next attempt. */
  | { kind: "failed"; error: string; permanent: boolean; retryInMs: number }
  | { kind: "cancelled" };

/**
 * What an attempt's ending becomes under the task's retry policy: the ONE place that decides
 * retry vs FAILED vs SUCCEEDED for an attempt that reached its end (a lost attempt, whose worker
 * died, is decided by the rescue: lifecycle/attempt.ts). What the row's state does to it when it
 * is recorded (a cancel pending turns a retry into CANCELLED, a pause holds it) is decided by
 * the outcome statement, against the row as it is then.
 */
export function afterAttempt(task: { attempts: number; max_attempts: number }, ending: AttemptEnding): AttemptOutcome {
  const attempt = task.attempts;
  switch (ending.kind) {
    case "succeeded":
      return { kind: "succeeded", result: ending.result, details: `attempt ${attempt} succeeded` };
    case "cancelled":
      return { kind: "cancelled", details: `attempt ${attempt} cancelled by request while running` };
    case "failed": {
      const { error } = ending;
      if (ending.permanent) return permanentFailure(attempt, error);
      if (attempt >= task.max_attempts) {
        return { kind: "failed", error, details: `attempt ${attempt} failed: ${error}; giving up after ${attempt} attempt${attempt === 1 ? "" : "s"}` };
      }
      return {
        kind: "retrying",
        error,
        retryAt: new Date(Date.now() + ending.retryInMs),
        details: `attempt ${attempt} failed: ${error}; ${ending.retryInMs === 0 ? "retrying now" : `retrying in ${formatDuration(ending.retryInMs)}`}`,
      };
    }
  }
}

/** A failure that is not retried, whatever attempts remain. */
export function permanentFailure(attempt: number, error: string): AttemptOutcome {
  return { kind: "failed", error, details: `attempt ${attempt} failed permanently: ${error}` };
}
