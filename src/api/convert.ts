import { create, type JsonObject } from "@bufbuild/protobuf";
import { DurationSchema, timestampFromDate, type Duration } from "@bufbuild/protobuf/wkt";
import {
  TaskBackoffSchema,
  TaskHistoryEntrySchema,
  TaskSchema,
  TaskProgressSchema,
  TaskStatus as ProtoStatus,
  type Task,
  type TaskProgress,
  type TaskHistoryEntry,
} from "../gen/task/v1/task_pb.js";
import type { TaskHistoryRow, TaskProgressRow, TaskRow, TaskStatus } from "../store/schema.js";
import { labelsOf } from "../labels.js";

const toProto: Record<TaskStatus, ProtoStatus> = {
  queued: ProtoStatus.QUEUED,
  running: ProtoStatus.RUNNING,
  retrying: ProtoStatus.RETRYING,
  paused: ProtoStatus.PAUSED,
  succeeded: ProtoStatus.SUCCEEDED,
  failed: ProtoStatus.FAILED,
  cancelled: ProtoStatus.CANCELLED,
  expired: ProtoStatus.EXPIRED,
};
const fromProto = new Map(Object.entries(toProto).map(([k, v]) => [v, k as TaskStatus]));

/** The stored status as the API enum. */
export function statusToProto(status: TaskStatus): ProtoStatus {
  return toProto[status];
}

/** The API enum as a stored status; undefined for UNSPECIFIED or unknown numbers. */
export function statusFromProto(status: ProtoStatus): TaskStatus | undefined {
  return fromProto.get(status);
}

/** Milliseconds as a protobuf Duration. */
export function durationFromMs(ms: number): Duration {
  return create(DurationSchema, { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 });
}

/** A protobuf Duration in milliseconds (may be fractional or negative: callers validate). */
export function durationToMs(d: Duration): number {
  return Number(d.seconds) * 1000 + d.nanos / 1_000_000;
}

const optionalTimestamp = (d: Date | null) => (d ? timestampFromDate(d) : undefined);

/** A task row as the API message; every timestamp the row has is filled. */
export function taskToProto(row: TaskRow, progress?: TaskProgressRow): Task {
  return create(TaskSchema, {
    id: BigInt(row.id),
    name: row.name,
    type: row.type,
    status: statusToProto(row.status),
    parameters: row.parameters as JsonObject,
    priority: row.priority,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    timeout: durationFromMs(row.timeout_ms),
    runAt: timestampFromDate(row.run_at),
    result: (row.result ?? undefined) as JsonObject | undefined,
    lastError: row.last_error ?? "",
    createdAt: timestampFromDate(row.created_at),
    updatedAt: timestampFromDate(row.updated_at),
    startedAt: optionalTimestamp(row.started_at),
    finishedAt: optionalTimestamp(row.finished_at),
    idempotencyKey: row.idempotency_key ?? "",
    scheduleId: row.schedule_id ? BigInt(row.schedule_id) : 0n,
    scheduledAt: optionalTimestamp(row.scheduled_at),
    queue: row.queue,
    key: row.key ?? "",
    units: row.units,
    backoff:
      row.backoff_base_ms !== null && row.backoff_max_ms !== null
        ? create(TaskBackoffSchema, { base: durationFromMs(row.backoff_base_ms), max: durationFromMs(row.backoff_max_ms) })
        : undefined,
    pausedAt: row.status === "paused" ? optionalTimestamp(row.paused_at) : undefined,
    expireAfter: row.expire_after_ms !== null ? durationFromMs(row.expire_after_ms) : undefined,
    expiresAt: optionalTimestamp(row.expires_at),
    labels: labelsOf(row.labels),
    // Only the current attempt's: after a retry, the previous attempt's bar would mislead.
    progress: progress && progress.attempt === row.attempts ? progressToProto(progress) : undefined,
  });
}

/**
 * A progress row as the API message, with the rate (average since the attempt's first report: the
 * trend, less jumpy than the last interval) and the time left at that rate.
 */
export function progressToProto(p: TaskProgressRow): TaskProgress {
  const seconds = (p.updated_at.getTime() - p.first_at.getTime()) / 1000;
  const rate = seconds >= 1 && p.fraction > p.first_fraction ? (p.fraction - p.first_fraction) / seconds : 0;
  return create(TaskProgressSchema, {
    attempt: p.attempt,
    fraction: p.fraction,
    message: p.message,
    updatedAt: timestampFromDate(p.updated_at),
    ratePerSecond: rate,
    estimatedRemaining: rate > 0 ? durationFromMs(Math.round(((1 - p.fraction) / rate) * 1000)) : undefined,
  });
}

/** A history row as the API message. */
export function historyToProto(row: TaskHistoryRow): TaskHistoryEntry {
  return create(TaskHistoryEntrySchema, {
    id: BigInt(row.id),
    taskId: BigInt(row.task_id),
    status: statusToProto(row.status),
    attempt: row.attempt,
    details: row.details,
    createdAt: timestampFromDate(row.created_at),
  });
}
