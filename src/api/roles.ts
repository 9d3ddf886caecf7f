import { PermissionDeniedError } from "../errors.js";
import { apiRoles, type ApiRole } from "../store/schema.js";
import type { Identity } from "./identity.js";

/**
 * Whether `held` includes `needed` (admin includes operator includes reader). An agent token is
 * good for AgentService alone, and AgentService takes an agent token or an admin (the local caller
 * of a server without tokens, or an operator's own agent).
 */
export function roleAllows(held: ApiRole, needed: ApiRole): boolean {
  if (held === "agent" || needed === "agent") return held === needed || (needed === "agent" && held === "admin");
  return apiRoles.indexOf(held) >= apiRoles.indexOf(needed);
}

/**
 * What a token restricted to some queues or types (`token create --queues/--types`) may do with an RPC:
 * - `allow`: nothing task-specific in it (WhoAmI, reflection);
 * - `task`: it names one task by `id`; a task outside the restriction is NotFound, as if absent;
 * - `queue`: it names one queue by `name`; allowed when the token is restricted to queues that include it;
 * - `handler`: the handler narrows what it reads or refuses what it would write (list filters, creates, bulk);
 * - `refuse`: it reads or changes things across queues and types, so a restricted token gets PermissionDenied.
 */
export type RestrictedAccess = "allow" | "task" | "queue" | "handler" | "refuse";

/** The role an RPC needs and how it treats restricted tokens. */
export interface MethodRule {
  role: ApiRole;
  restricted: RestrictedAccess;
}

const rule = (role: ApiRole, restricted: RestrictedAccess): MethodRule => ({ role, restricted });

/**
 * THE table of who may call what, by "package.Service/Method". Every RPC the server routes must be
 * here (test/roles.test.ts fails otherwise); one that is missing is refused to everyone, never allowed.
 * grpc.health.v1 is public (probes hold no token) and not listed.
 */
export const METHOD_RULES: Readonly<Record<string, MethodRule>> = {
  "task.v1.TaskService/CreateTask": rule("operator", "handler"),
  "task.v1.TaskService/CreateTasks": rule("operator", "handler"),
  "task.v1.TaskService/GetTask": rule("reader", "task"),
  "task.v1.TaskService/ListTasks": rule("reader", "handler"),
  "task.v1.TaskService/GetTaskHistory": rule("reader", "task"),
  "task.v1.TaskService/GetTaskStatusCounts": rule("reader", "handler"),
  "task.v1.TaskService/CancelTask": rule("operator", "task"),
  "task.v1.TaskService/RetryTask": rule("operator", "task"),
  "task.v1.TaskService/ListTaskTypes": rule("reader", "handler"),
  "task.v1.TaskService/GetTaskLogs": rule("reader", "task"),
  "task.v1.TaskService/WatchTask": rule("reader", "task"),
  "task.v1.TaskService/WatchTasks": rule("reader", "handler"),
  "task.v1.TaskService/GetTaskThroughput": rule("reader", "refuse"),
  "task.v1.TaskService/ListTaskFiles": rule("reader", "task"),
  "task.v1.TaskControlService/PauseTask": rule("operator", "task"),
  "task.v1.TaskControlService/ResumeTask": rule("operator", "task"),
  "task.v1.TaskControlService/DeleteTask": rule("admin", "task"),
  // BULK_ACTION_DELETE needs admin as well: see BULK_DELETE_ROLE.
  "task.v1.TaskControlService/BulkTasks": rule("operator", "handler"),
  "task.v1.QueueService/ListQueues": rule("reader", "handler"),
  "task.v1.QueueService/GetQueue": rule("reader", "queue"),
  "task.v1.QueueService/UpdateQueue": rule("admin", "queue"),
  "task.v1.QueueService/PauseQueue": rule("operator", "queue"),
  "task.v1.QueueService/ResumeQueue": rule("operator", "queue"),
  "task.v1.WorkerService/ListWorkers": rule("reader", "refuse"),
  "task.v1.RateLimitService/SetRateLimit": rule("admin", "refuse"),
  "task.v1.RateLimitService/ListRateLimits": rule("reader", "refuse"),
  "task.v1.RateLimitService/DeleteRateLimit": rule("admin", "refuse"),
  "task.v1.ScheduleService/CreateSchedule": rule("admin", "refuse"),
  "task.v1.ScheduleService/GetSchedule": rule("reader", "refuse"),
  "task.v1.ScheduleService/ListSchedules": rule("reader", "refuse"),
  "task.v1.ScheduleService/UpdateSchedule": rule("admin", "refuse"),
  "task.v1.ScheduleService/PauseSchedule": rule("admin", "refuse"),
  "task.v1.ScheduleService/ResumeSchedule": rule("admin", "refuse"),
  "task.v1.ScheduleService/DeleteSchedule": rule("admin", "refuse"),
  "task.v1.ScheduleService/TriggerSchedule": rule("admin", "refuse"),
  "task.v1.TokenService/CreateToken": rule("admin", "refuse"),
  "task.v1.TokenService/ListTokens": rule("admin", "refuse"),
  "task.v1.TokenService/RevokeToken": rule("admin", "refuse"),
  "task.v1.TokenService/WhoAmI": rule("reader", "allow"),
  // Who did what, across every queue: admins only (it names tokens and client addresses).
  "task.v1.AuditService/ListAuditEvents": rule("admin", "refuse"),
  // Remote agents (issue 26): an agent token, fixed to its queues by the handler (agent-service.ts).
  "task.v1.AgentService/Register": rule("agent", "allow"),
  "task.v1.AgentService/Assignments": rule("agent", "allow"),
  "task.v1.AgentService/Heartbeat": rule("agent", "allow"),
  "task.v1.AgentService/ReportOutcomes": rule("agent", "allow"),
  "task.v1.AgentService/AppendLogs": rule("agent", "allow"),
  // The API's schema, which is no secret; needs a token like every other RPC.
  "grpc.reflection.v1.ServerReflection/ServerReflectionInfo": rule("reader", "allow"),
  "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": rule("reader", "allow"),
};

/** The role BulkTasks needs for BULK_ACTION_DELETE (the table's operator covers the other actions). */
export const BULK_DELETE_ROLE: ApiRole = "admin";

/** Plain HTTP routes, checked like RPCs. */
export const HTTP_RULES = {
  /** GET /tasks/{id}/logs: the log download, a read of one task. */
  logDownload: rule("reader", "task"),
  /** POST /uploads: a file for a task about to be created (creating needs operator; the create checks the restriction). */
  upload: rule("operator", "allow"),
  /** GET /tasks/{id}/artifacts/{name}: a file an attempt kept, a read of one task as the log download. */
  artifactDownload: rule("reader", "task"),
  /** GET /metrics on the API port: counts across every queue and type. */
  metrics: rule("reader", "refuse"),
  /** GET /audit/export: the audit log as NDJSON, as ListAuditEvents. */
  auditExport: rule("admin", "refuse"),
} as const satisfies Record<string, MethodRule>;

/** Who the caller is, for messages: "token ci" or "the local caller". */
function describe(who: Identity): string {
  return who.local ? "the local caller" : `token ${who.name}`;
}

/** Throws PermissionDenied unless the caller's role includes `needed`. */
export function requireRole(who: Identity, needed: ApiRole, what = ""): void {
  if (!roleAllows(who.role, needed)) {
    throw new PermissionDeniedError(`${what ? `${what} ` : ""}requires role ${needed}; ${describe(who)} has ${who.role}`);
  }
}

/** Whether the caller is restricted to some queues or types. */
export function isRestricted(who: Identity): boolean {
  return who.queues.length > 0 || who.types.length > 0;
}

/** Throws PermissionDenied for an RPC a restricted token may not call at all. */
export function refuseRestricted(who: Identity, what: string): void {
  if (isRestricted(who)) throw new PermissionDeniedError(`${what} is not available to ${describe(who)}, which is restricted to ${restrictionText(who)}`);
}

/** "queues reports, types shell" */
export function restrictionText(who: Identity): string {
  const parts = [];
  if (who.queues.length > 0) parts.push(`queues ${who.queues.join(", ")}`);
  if (who.types.length > 0) parts.push(`types ${who.types.join(", ")}`);
  return parts.join(" and ");
}

/** Whether a task (by its queue and type) is inside the caller's restriction. */
export function canSeeTask(who: Identity, task: { queue: string; type: string }): boolean {
  return (who.queues.length === 0 || who.queues.includes(task.queue)) && (who.types.length === 0 || who.types.includes(task.type));
}

/** Throws PermissionDenied when a task the caller wants to create is outside its restriction. */
export function requireTaskScope(who: Identity, task: { queue: string; type: string }, field = ""): void {
  if (canSeeTask(who, task)) return;
  throw new PermissionDeniedError(`${field}${describe(who)} may only use ${restrictionText(who)}; this task is type ${task.type} in queue ${task.queue}`);
}

/** Throws PermissionDenied unless a restricted caller's queues include `queue` (a token restricted by type may not change a queue). */
export function requireQueueScope(who: Identity, queue: string): void {
  if (!isRestricted(who)) return;
  if (who.types.length === 0 && who.queues.includes(queue)) return;
  throw new PermissionDeniedError(`queue ${queue} is not available to ${describe(who)}, which is restricted to ${restrictionText(who)}`);
}

/**
 * A list filter narrowed to what the caller may see: each restricted dimension becomes the requested
 * values that are allowed (all allowed ones when none were requested). undefined: nothing can match.
 */
export function narrowFilter<F extends { queues?: string[]; types: string[] }>(who: Identity, filter: F): F | undefined {
  const narrow = (requested: string[], allowed: string[]) => (allowed.length === 0 ? requested : requested.length === 0 ? allowed : requested.filter((v) => allowed.includes(v)));
  const queues = narrow(filter.queues ?? [], who.queues);
  const types = narrow(filter.types, who.types);
  if ((who.queues.length > 0 && queues.length === 0) || (who.types.length > 0 && types.length === 0)) return undefined;
  return { ...filter, queues, types };
}
