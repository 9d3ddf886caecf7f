import { MAX_TEXT_LENGTH, QUEUE_NAME_PATTERN } from "../../../../src/field-rules.js";
import type { TaskStatus } from "../../../../src/gen/task/v1/task_pb.js";
import { STATUSES, statusFromName, statusName } from "../../format";

/** The tasks view's state, all of it kept in the URL so a view can be shared and survives reload. */
export interface TaskListSearch {
  statuses: TaskStatus[];
  types: string[];
  /** Only tasks in these queues. */
  queues: string[];
  /** Search by id: only these tasks. */
  ids: bigint[];
  /** Only tasks these schedules created (the schedules view links here). */
  schedules: bigint[];
  /** Search by name: only tasks whose name starts with this ("" for any). */
  name: string;
  /** Only tasks created at or after / before these times. */
  createdAfter: Date | undefined;
  createdBefore: Date | undefined;
  /** The page token of the page shown ("" for the newest page). */
  cursor: string;
  pageSize: number;
}

export const DEFAULT_PAGE_SIZE = 50;
export const PAGE_SIZES = [20, 50, 100, 200];
const MAX_IDS = 100;

function list(params: URLSearchParams, key: string): string[] {
  return (params.get(key) ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
}

/** Parses "1, #2 3" into ids; undefined when some part is not a task id. */
export function parseIds(text: string): bigint[] | undefined {
  const parts = text.split(/[\s,]+/).map((s) => s.replace(/^#/, "")).filter((s) => s !== "");
  if (parts.some((p) => !/^[1-9]\d{0,18}$/.test(p))) return undefined;
  return [...new Set(parts)].slice(0, MAX_IDS).map((p) => BigInt(p));
}

/** A time from the URL (ISO 8601), or undefined when it is not one. */
function parseTime(text: string | null): Date | undefined {
  if (!text || !/^\d{4}-\d{2}-\d{2}T/.test(text)) return undefined;
  const d = new Date(text);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** A time for the URL: ISO 8601 in UTC, without milliseconds when they are zero. */
export function timeForUrl(d: Date): string {
  return d.toISOString().replace(".000Z", "Z");
}

/** What the search box means: ids when it holds only ids, else the start of a name. */
export function parseSearchText(text: string): { ids: bigint[]; name: string } {
  const trimmed = text.trim();
  if (trimmed === "") return { ids: [], name: "" };
  const ids = parseIds(trimmed);
  return ids ? { ids, name: "" } : { ids: [], name: trimmed.slice(0, MAX_TEXT_LENGTH) };
}

/** Reads the view from a query string; values that make no sense are dropped, not errors. */
export function parseTaskListSearch(search: string): TaskListSearch {
  const params = new URLSearchParams(search);
  const statuses = STATUSES.filter((s) => list(params, "status").some((n) => statusFromName(n) === s));
  const types = [...new Set(list(params, "type"))];
  const queues = [...new Set(list(params, "queue"))].filter((q) => QUEUE_NAME_PATTERN.test(q));
  const ids = parseIds(list(params, "id").join(",")) ?? [];
  const schedules = parseIds(list(params, "schedule").join(",")) ?? [];
  const size = Number(params.get("size"));
  const createdAfter = parseTime(params.get("after"));
  let createdBefore = parseTime(params.get("before"));
  // An empty range is nothing anyone asks for: keep the lower bound.
  if (createdAfter && createdBefore && createdBefore <= createdAfter) createdBefore = undefined;
  return {
    statuses,
    types,
    queues,
    ids,
    schedules,
    name: (params.get("name") ?? "").slice(0, MAX_TEXT_LENGTH),
    createdAfter,
    createdBefore,
    cursor: params.get("cursor") ?? "",
    pageSize: PAGE_SIZES.includes(size) ? size : DEFAULT_PAGE_SIZE,
  };
}

/** The query string for a view, defaults left out and in a stable order (so equal views have equal URLs). */
export function taskListSearchString(s: TaskListSearch): string {
  const params = new URLSearchParams();
  if (s.statuses.length > 0) params.set("status", [...s.statuses].sort((a, b) => a - b).map((st) => statusName(st).toLowerCase()).join(","));
  if (s.types.length > 0) params.set("type", [...s.types].sort().join(","));
  if (s.queues.length > 0) params.set("queue", [...s.queues].sort().join(","));
  if (s.ids.length > 0) params.set("id", s.ids.join(","));
  if (s.schedules.length > 0) params.set("schedule", s.schedules.join(","));
  if (s.name) params.set("name", s.name);
  if (s.createdAfter) params.set("after", timeForUrl(s.createdAfter));
  if (s.createdBefore) params.set("before", timeForUrl(s.createdBefore));
  if (s.pageSize !== DEFAULT_PAGE_SIZE) params.set("size", String(s.pageSize));
  if (s.cursor) params.set("cursor", s.cursor);
  // Commas and colons are safe in a query string and far easier to read than %2C and %3A.
  return params.toString().replaceAll("%2C", ",").replaceAll("%3A", ":");
}
