import { durationToMs } from "../api/convert.js";
import { formatDuration } from "../duration.js";
import type {
  GetTaskHistoryResponse,
  GetTaskStatusCountsResponse,
  ListTasksResponse,
  ListTaskTypesResponse,
  Task,
} from "../gen/task/v1/task_pb.js";
import { humanTime, isoTime, keyValueTable, makeTable, statusName, truncate } from "./output.js";

/** One task, as key/value lines. */
export function taskTable(task: Task | undefined): string {
  if (!task) return "(no task)";
  const rows: [string, string][] = [
    ["ID", task.id.toString()],
    ["Name", task.name],
    ["Type", task.type],
    ["Status", statusName(task.status)],
    ["Attempts", `${task.attempts}/${task.maxAttempts}`],
    ["Priority", String(task.priority)],
    ["Timeout", task.timeout ? formatDuration(durationToMs(task.timeout)) : "-"],
    ["Parameters", truncate(JSON.stringify(task.parameters ?? {}), 80)],
    ["Created", `${isoTime(task.createdAt)} (${humanTime(task.createdAt)})`],
    ["Run at", `${isoTime(task.runAt)} (${humanTime(task.runAt)})`],
    ["Started", task.startedAt ? `${isoTime(task.startedAt)} (${humanTime(task.startedAt)})` : "-"],
    ["Finished", task.finishedAt ? `${isoTime(task.finishedAt)} (${humanTime(task.finishedAt)})` : "-"],
  ];
  if (task.result) rows.push(["Result", truncate(JSON.stringify(task.result), 80)]);
  if (task.lastError) rows.push(["Last error", truncate(task.lastError, 80)]);
  if (task.idempotencyKey) rows.push(["Idempotency key", task.idempotencyKey]);
  return keyValueTable(rows);
}

/** A page of tasks, one line each, with the total and how to get the next page. */
export function taskListTable(res: ListTasksResponse): string {
  const table = makeTable(["ID", "NAME", "TYPE", "STATUS", "ATTEMPTS", "CREATED", "UPDATED"]);
  for (const t of res.tasks) {
    table.push([t.id.toString(), truncate(t.name, 28), truncate(t.type, 12), statusName(t.status), `${t.attempts}/${t.maxAttempts}`, humanTime(t.createdAt), humanTime(t.updatedAt)]);
  }
  const page = res.pageNumber > 0 ? `page ${res.pageNumber}, ` : "";
  const footer = `${res.tasks.length} shown (${page}${res.totalCount} total)`;
  return res.tasks.length === 0 ? `no tasks (${res.totalCount} total)` : `${table.toString()}\n${footer}`;
}

/** Every status with its count. */
export function statusCountsTable(res: GetTaskStatusCountsResponse): string {
  const table = makeTable(["STATUS", "COUNT"]);
  for (const c of res.counts) table.push([statusName(c.status), c.count.toString()]);
  table.push(["TOTAL", res.total.toString()]);
  return table.toString();
}

/** A task's history, oldest first. */
export function historyTable(res: GetTaskHistoryResponse): string {
  const table = makeTable(["TIME", "STATUS", "ATTEMPT", "DETAILS"]);
  for (const h of res.history) table.push([isoTime(h.createdAt), statusName(h.status), String(h.attempt), truncate(h.details, 60)]);
  return table.toString();
}

/** Registered task types and their parameters. */
export function taskTypesTable(res: ListTaskTypesResponse): string {
  const table = makeTable(["TYPE", "ENABLED", "PARAMETERS", "DESCRIPTION"]);
  for (const t of res.types) {
    const schema = (t.parameterSchema ?? {}) as { properties?: Record<string, unknown>; required?: string[] };
    const required = new Set(schema.required ?? []);
    const params = Object.keys(schema.properties ?? {}).map((p) => (required.has(p) ? p : `${p}?`));
    table.push([t.name, t.enabled ? "yes" : "no", truncate(params.join(", "), 32), truncate(t.description, 30)]);
  }
  return table.toString();
}
