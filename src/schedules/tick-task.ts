import type { ResolvedTaskType, TaskTypeResolver } from "../plugins/types.js";
import type { ScheduleRow } from "../store/schema.js";
import type { NewTask } from "../store/tasks.js";
import { tickTraceparent } from "../tracing.js";
import { renderTemplate } from "./template.js";

/**
 * The task a schedule's tick creates: the template with the tick's placeholders filled, checked
 * against the type's schema as it is now (defaults applied), the type's default attempts and
 * timeout where the schedule leaves them out. Throws InvalidArgumentError or TaskTypeDisabledError
 * when the type no longer accepts the template.
 */
export function tickTask<T extends ResolvedTaskType>(schedule: ScheduleRow, registry: TaskTypeResolver<T>, scheduledAt: Date): NewTask {
  const plugin = registry.resolve(schedule.type, "task.type");
  const rendered = renderTemplate(schedule.parameters, { scheduledAt, timeZone: schedule.time_zone, scheduleName: schedule.name });
  return {
    name: schedule.name,
    type: schedule.type,
    parameters: registry.parse(plugin, rendered, "task.parameters"),
    priority: schedule.priority,
    maxAttempts: schedule.max_attempts || plugin.defaults.maxAttempts,
    timeoutMs: schedule.timeout_ms ?? plugin.defaults.timeoutMs,
    runAt: scheduledAt,
    idempotencyKey: null,
    requestHash: null,
    scheduleId: schedule.id,
    scheduledAt,
    // Each tick is a trace of its own (none while tracing is off).
    traceparent: tickTraceparent(schedule.name, scheduledAt),
    key: schedule.key,
    labels: schedule.labels,
  };
}
