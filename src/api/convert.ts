import { create, type JsonObject } from "@bufbuild/protobuf";
import { DurationSchema, timestampFromDate, type Duration } from "@bufbuild/protobuf/wkt";
import {
  TaskBackoffSchema,
  TaskHistoryEntrySchema,
  TaskSchema,
  TaskStatus as ProtoStatus,
  type Task,
  type TaskHistoryEntry,
} from "../gen/task/v1/task_pb.js";
import type { TaskHistoryRow, TaskRow, TaskStatus } from "../store/schema.js";

const toProto: Record<TaskStatus, ProtoStatus> = {
  queued: ProtoStatus.QUEUED,
  running: ProtoStatus.RUNNING,
  retrying: ProtoStatus.RETRYING,
  paused: ProtoStatus.PAUSED,
  succeeded: ProtoStatus.SUCCEEDED,
  failed: ProtoStatus.FAILED,
  cancelled: ProtoStatus.CANCELLED,
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
export function taskToProto(row: TaskRow): Task {
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
    backoff:
      row.backoff_base_ms !== null && row.backoff_max_ms !== null
        ? create(TaskBackoffSchema, { base: durationFromMs(row.backoff_base_ms), max: durationFromMs(row.backoff_max_ms) })
        : undefined,
    pausedAt: row.status === "paused" ? optionalTimestamp(row.paused_at) : undefined,
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
