import { labelsOf } from "../labels.js";
import { create, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  CatchUpPolicy as ProtoCatchUp,
  OverlapPolicy as ProtoOverlap,
  ScheduleSchema,
  ScheduleSpecSchema,
  TaskTemplateSchema,
  type Schedule,
} from "../gen/task/v1/schedule_pb.js";
import { TaskStatus } from "../gen/task/v1/task_pb.js";
import type { ScheduleView } from "../store/schedules.js";
import type { CatchUpPolicy, OverlapPolicy, ScheduleRow } from "../store/schema.js";
import { durationFromMs, statusToProto } from "./convert.js";

const catchUpToProto: Record<CatchUpPolicy, ProtoCatchUp> = {
  skip: ProtoCatchUp.SKIP,
  latest: ProtoCatchUp.LATEST,
  backfill: ProtoCatchUp.BACKFILL,
};
const overlapToProto: Record<OverlapPolicy, ProtoOverlap> = {
  allow: ProtoOverlap.ALLOW,
  skip: ProtoOverlap.SKIP,
  cancel_previous: ProtoOverlap.CANCEL_PREVIOUS,
};

/** The API enum as a stored catch-up policy (UNSPECIFIED: skip); undefined for unknown numbers. */
export function catchUpFromProto(policy: ProtoCatchUp): CatchUpPolicy | undefined {
  if (policy === ProtoCatchUp.UNSPECIFIED) return "skip";
  return (Object.keys(catchUpToProto) as CatchUpPolicy[]).find((k) => catchUpToProto[k] === policy);
}

/** The API enum as a stored overlap policy (UNSPECIFIED: allow); undefined for unknown numbers. */
export function overlapFromProto(policy: ProtoOverlap): OverlapPolicy | undefined {
  if (policy === ProtoOverlap.UNSPECIFIED) return "allow";
  return (Object.keys(overlapToProto) as OverlapPolicy[]).find((k) => overlapToProto[k] === policy);
}

const optionalTimestamp = (d: Date | null) => (d ? timestampFromDate(d) : undefined);

/** A stored schedule as the API message (the latest task's status when the row carries it). */
export function scheduleToProto(row: ScheduleRow | ScheduleView): Schedule {
  const lastStatus = "last_task_status" in row && row.last_task_status ? statusToProto(row.last_task_status) : TaskStatus.UNSPECIFIED;
  return create(ScheduleSchema, {
    id: BigInt(row.id),
    spec: create(ScheduleSpecSchema, {
      name: row.name,
      cron: row.cron,
      timeZone: row.time_zone,
      task: create(TaskTemplateSchema, {
        type: row.type,
        parameters: row.parameters as JsonObject,
        priority: row.priority,
        maxAttempts: row.max_attempts,
        timeout: row.timeout_ms === null ? undefined : durationFromMs(row.timeout_ms),
        key: row.key ?? "",
        labels: labelsOf(row.labels),
      }),
      paused: row.paused,
      catchUp: catchUpToProto[row.catch_up],
      backfillLimit: row.backfill_limit,
      overlap: overlapToProto[row.overlap],
    }),
    nextRunAt: optionalTimestamp(row.next_run_at),
    lastRunAt: optionalTimestamp(row.last_run_at),
    lastTaskId: row.last_task_id ? BigInt(row.last_task_id) : 0n,
    lastTaskStatus: lastStatus,
    lastError: row.last_error ?? "",
    createdAt: timestampFromDate(row.created_at),
    updatedAt: timestampFromDate(row.updated_at),
  });
}
