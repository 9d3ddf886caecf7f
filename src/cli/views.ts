import { durationToMs } from "../api/convert.js";
import { formatDuration } from "../duration.js";
import { formatLabels } from "../labels.js";
import {
  TaskStatus,
  type GetTaskHistoryResponse,
  type GetTaskStatusCountsResponse,
  type ListTasksResponse,
  type ListTaskTypesResponse,
  type Task,
} from "../gen/task/v1/task_pb.js";
import { DEFAULT_COLUMNS } from "./io.js";
import { humanTime, isoTime, keyValueTable, makeTable, progressText, statusName, truncate } from "./output.js";

/**
 * Columns a table row spends besides its flexible columns: the fixed columns' widths, plus each
 * cell's padding (one space either side) and the two-space gap between cells (see makeTable).
 */
function overhead(fixed: number[], columns: number): number {
  return fixed.reduce((a, b) => a + b, 0) + 4 * columns - 2;
}

/** One task, as key/value lines, long values cut to fit `width` columns. */
export function taskTable(task: Task | undefined, width = DEFAULT_COLUMNS): string {
  if (!task) return "(no task)";
  const value = Math.max(40, width - overhead([15], 2));
  const rows: [string, string][] = [
    ["ID", task.id.toString()],
    ["Name", task.name],
    ["Type", task.type],
    ["Queue", task.queue || "default"],
    ...(task.key ? [["Key", task.key] as [string, string]] : []),
    ...(Object.keys(task.labels).length > 0 ? [["Runs on", `workers with labels ${formatLabels(task.labels)}`] as [string, string]] : []),
    ...(task.units > 1 ? [["Units", String(task.units)] as [string, string]] : []),
    ["Status", statusName(task.status)],
    ...(task.waitReason ? [["Waiting for", task.waitReason] as [string, string]] : []),
    ["Attempts", `${task.attempts}/${task.maxAttempts}`],
    ["Priority", String(task.priority)],
    ["Timeout", task.timeout ? formatDuration(durationToMs(task.timeout)) : "-"],
    ["Parameters", truncate(JSON.stringify(task.parameters ?? {}), value)],
    ["Created", `${isoTime(task.createdAt)} (${humanTime(task.createdAt)})`],
    ["Run at", `${isoTime(task.runAt)} (${humanTime(task.runAt)})`],
    ["Started", task.startedAt ? `${isoTime(task.startedAt)} (${humanTime(task.startedAt)})` : "-"],
    ["Finished", task.finishedAt ? `${isoTime(task.finishedAt)} (${humanTime(task.finishedAt)})` : "-"],
  ];
  if (task.progress) rows.push(["Progress", truncate(progressText(task.progress), value)]);
  if (task.pausedAt) rows.push(["Paused", `${isoTime(task.pausedAt)} (${humanTime(task.pausedAt)}); \`task-cli task resume --id ${task.id}\` continues it`]);
  if (task.backoff?.base && task.backoff.max) {
    rows.push(["Backoff", `${formatDuration(durationToMs(task.backoff.base))} doubling, at most ${formatDuration(durationToMs(task.backoff.max))}`]);
  }
  if (task.expireAfter && task.expiresAt) {
    const verb = task.status === TaskStatus.EXPIRED ? "expired" : task.startedAt ? "started in time; would have expired" : "expires if not started by";
    rows.push(["Expiry", `${formatDuration(durationToMs(task.expireAfter))} after due: ${verb} ${isoTime(task.expiresAt)} (${humanTime(task.expiresAt)})`]);
  }
  if (task.result) rows.push(["Result", truncate(JSON.stringify(task.result), value)]);
  if (task.lastError) rows.push(["Last error", truncate(task.lastError, value)]);
  if (task.idempotencyKey) rows.push(["Idempotency key", task.idempotencyKey]);
  return keyValueTable(rows);
}

/** A page of tasks, one line each, with the total and how to get the next page. */
export function taskListTable(res: ListTasksResponse, width = DEFAULT_COLUMNS): string {
  const table = makeTable(["ID", "NAME", "TYPE", "STATUS", "ATTEMPTS", "CREATED", "UPDATED"]);
  // ID, TYPE, STATUS, ATTEMPTS, CREATED, UPDATED take at most 6, 12, 13, 8, 8, 8: the name gets the rest.
  // A running task's status carries its progress ("RUNNING 42%").
  const name = Math.max(16, width - overhead([6, 12, 13, 8, 8, 8], 7));
  for (const t of res.tasks) {
    const status = t.progress && (t.status === TaskStatus.RUNNING || t.status === TaskStatus.PAUSED) ? `${statusName(t.status)} ${Math.floor(t.progress.fraction * 100)}%` : statusName(t.status);
    table.push([t.id.toString(), truncate(t.name, name), truncate(t.type, 12), status, `${t.attempts}/${t.maxAttempts}`, humanTime(t.createdAt), humanTime(t.updatedAt)]);
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
export function historyTable(res: GetTaskHistoryResponse, width = DEFAULT_COLUMNS): string {
  const table = makeTable(["TIME", "STATUS", "ATTEMPT", "DETAILS"]);
  // TIME, STATUS and ATTEMPT take 24, 9 and 7: the details get the rest.
  const details = Math.max(20, width - overhead([24, 9, 7], 4));
  for (const h of res.history) table.push([isoTime(h.createdAt), statusName(h.status), String(h.attempt), truncate(h.details, details)]);
  return table.toString();
}

/** Registered task types, their parameters and how many live workers serve each. */
export function taskTypesTable(res: ListTaskTypesResponse, width = DEFAULT_COLUMNS): string {
  const table = makeTable(["TYPE", "ENABLED", "PARAMETERS", "SERVED BY", "DESCRIPTION"]);
  const rows = res.types.map((t) => {
    const schema = (t.parameterSchema ?? {}) as { properties?: Record<string, unknown>; required?: string[] };
    const required = new Set(schema.required ?? []);
    const served = t.workers.length === 0 ? "none" : `${t.workers.length} worker${t.workers.length === 1 ? "" : "s"}`;
    return { t, served, params: Object.keys(schema.properties ?? {}).map((p) => (required.has(p) ? p : `${p}?`)).join(", ") };
  });
  // TYPE, ENABLED and SERVED BY take what their longest value needs; parameters get what they need
  // up to half the rest, the description everything left.
  const servedWidth = Math.max(9, ...rows.map((r) => r.served.length));
  const rest = Math.max(50, width - overhead([Math.max(4, ...rows.map((r) => r.t.name.length)), 7, servedWidth], 5));
  const params = Math.min(Math.max(10, ...rows.map((r) => r.params.length)), Math.floor(rest / 2));
  const description = Math.max(20, rest - params);
  for (const { t, served, params: p } of rows) table.push([t.name, t.enabled ? "yes" : "no", truncate(p, params), served, truncate(t.description, description)]);
  return table.toString();
}
