import { create } from "@bufbuild/protobuf";
import { InvalidArgumentError } from "../errors.js";
import type { ScheduleSpec } from "../gen/task/v1/schedule_pb.js";
import { CreateTaskRequestSchema } from "../gen/task/v1/task_pb.js";
import type { ResolvedTaskType, TaskTypeResolver } from "../plugins/types.js";
import { CronSchedule, isKnownTimeZone } from "../schedules/cron.js";
import { findUnknownPlaceholder, placeholderNames, renderTemplate } from "../schedules/template.js";
import type { NewSchedule } from "../store/schedules.js";
import { catchUpFromProto, overlapFromProto } from "./schedule-convert.js";
import { textProblem, Violations } from "./fields.js";
import { validateCreateTask } from "./validate.js";

const MAX_BACKFILL = 1000;

/** A validated schedule and its first tick after `now` (undefined when paused). */
export interface ValidSchedule {
  schedule: NewSchedule;
  nextRunAt: Date | null;
}

/**
 * Checks a schedule spec and resolves it into a row to store: name, expression, zone and policies
 * well-formed, and the task template accepted by its type exactly as a CreateTask would be (the
 * parameters rendered for the first tick, so a placeholder in a field that must be a number is
 * caught now, not at 7 am). Every problem is reported at once, each with its field.
 */
export function validateScheduleSpec<T extends ResolvedTaskType>(spec: ScheduleSpec | undefined, registry: TaskTypeResolver<T>, now: Date): ValidSchedule {
  if (!spec) throw InvalidArgumentError.of("spec", "is required");
  const v = new Violations();

  const name = v.requiredText("name", spec.name);

  const timeZone = spec.timeZone.trim() || "UTC";
  const zoneOk = isKnownTimeZone(timeZone);
  if (!zoneOk) v.add("time_zone", `unknown time zone "${timeZone}" (expected an IANA name such as Europe/Paris or UTC)`);

  const cron = spec.cron.trim().replace(/\s+/g, " ");
  let cronSchedule: CronSchedule | undefined;
  if (cron === "") v.add("cron", "is required");
  else if (textProblem(cron)) v.add("cron", "is not a cron expression");
  else {
    try {
      cronSchedule = new CronSchedule(cron, zoneOk ? timeZone : "UTC");
    } catch (err) {
      v.add("cron", `"${cron}" is not a valid cron expression: ${err instanceof Error ? err.message.replace(/^CronPattern: /, "") : String(err)}`);
    }
  }
  const firstTick = cronSchedule?.next(now);
  if (cronSchedule && !firstTick) v.add("cron", `"${cron}" never matches a future time`);

  const catchUp = catchUpFromProto(spec.catchUp);
  if (!catchUp) v.add("catch_up", `is not a valid catch-up policy (${spec.catchUp})`);
  if (catchUp === "backfill" && (spec.backfillLimit < 1 || spec.backfillLimit > MAX_BACKFILL)) {
    v.add("backfill_limit", `must be between 1 and ${MAX_BACKFILL} with catch-up policy backfill`);
  } else if (catchUp !== "backfill" && spec.backfillLimit !== 0) {
    v.add("backfill_limit", "is only allowed with catch-up policy backfill");
  }
  const overlap = overlapFromProto(spec.overlap);
  if (!overlap) v.add("overlap", `is not a valid overlap policy (${spec.overlap})`);

  const template = spec.task;
  if (!template) v.add("task", "is required");
  const parameters = (template?.parameters ?? {}) as Record<string, unknown>;
  const unknown = findUnknownPlaceholder(parameters, "task.parameters");
  if (unknown) v.add(unknown[0], `unknown placeholder {{${unknown[1]}}} (known: ${placeholderNames.join(", ")})`);

  // The template must make a valid task; check it the way CreateTask would, with the first tick's values.
  let resolved: ReturnType<typeof validateCreateTask> | undefined;
  if (template && !unknown) {
    const sample = renderTemplate(parameters, { scheduledAt: firstTick ?? now, timeZone: zoneOk ? timeZone : "UTC", scheduleName: name });
    const request = create(CreateTaskRequestSchema, {
      name: name || "schedule",
      type: template.type,
      parameters: sample as never,
      priority: template.priority,
      maxAttempts: template.maxAttempts,
      timeout: template.timeout,
      key: template.key,
      labels: template.labels,
    });
    try {
      resolved = validateCreateTask(request, registry, "task.");
    } catch (err) {
      if (!(err instanceof InvalidArgumentError)) throw err;
      for (const violation of err.violations) if (violation.field !== "task.name") v.add(violation.field, violation.reason);
    }
  }
  v.throwIfAny();

  return {
    schedule: {
      name,
      cron,
      timeZone,
      type: template!.type,
      parameters,
      priority: template!.priority,
      maxAttempts: template!.maxAttempts,
      // Keep "the type's default" as such, so a later change of the default applies.
      timeoutMs: template!.timeout ? resolved!.timeoutMs : null,
      paused: spec.paused,
      catchUp: catchUp!,
      backfillLimit: spec.backfillLimit,
      overlap: overlap!,
      key: template!.key === "" ? null : template!.key,
      labels: resolved!.labels ?? null,
    },
    nextRunAt: spec.paused ? null : firstTick!,
  };
}

/** A schedule name from a request: required, or InvalidArgument naming the field. */
export function validateScheduleName(name: string, field = "name"): string {
  const trimmed = name.trim();
  if (trimmed === "") throw InvalidArgumentError.of(field, "is required");
  if (textProblem(trimmed)) throw InvalidArgumentError.of(field, "is not a schedule name");
  return trimmed;
}
