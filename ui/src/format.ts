import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { formatDuration as format } from "../../src/duration.js";
import { FINISHED_TASK_STATUSES } from "../../src/finished-statuses.js";
import { TaskStatus } from "../../src/gen/task/v1/task_pb.js";

/** Statuses in lifecycle order, without UNSPECIFIED. */
export const STATUSES: TaskStatus[] = [
  TaskStatus.QUEUED,
  TaskStatus.RUNNING,
  TaskStatus.RETRYING,
  TaskStatus.SUCCEEDED,
  TaskStatus.FAILED,
  TaskStatus.CANCELLED,
  TaskStatus.PAUSED,
  TaskStatus.EXPIRED,
];

/** "QUEUED" for TaskStatus.QUEUED. */
export function statusName(status: TaskStatus): string {
  return TaskStatus[status] ?? "UNKNOWN";
}

/** The status for a name in a URL ("failed" or "FAILED"), or undefined. */
export function statusFromName(name: string): TaskStatus | undefined {
  const upper = name.toUpperCase();
  return STATUSES.find((s) => TaskStatus[s] === upper);
}

const TERMINAL = FINISHED_TASK_STATUSES;

/** Whether a task in this status is finished. */
export function isTerminal(status: TaskStatus): boolean {
  return TERMINAL.has(status);
}

/** Whether the API accepts CancelTask for this status. */
export function canCancel(status: TaskStatus): boolean {
  return !isTerminal(status) && status !== TaskStatus.UNSPECIFIED;
}

/** Whether the API accepts RetryTask for this status. */
export function canRetry(status: TaskStatus): boolean {
  return status === TaskStatus.FAILED || status === TaskStatus.CANCELLED || status === TaskStatus.EXPIRED;
}

/** Whether PauseTask may apply in this status (a running task only if its plugin can pause: the server says). */
export function canPause(status: TaskStatus): boolean {
  return status === TaskStatus.QUEUED || status === TaskStatus.RETRYING || status === TaskStatus.RUNNING;
}

/** The time a timestamp stands for, or undefined when unset. */
export function toDate(ts: Timestamp | undefined): Date | undefined {
  return ts ? timestampDate(ts) : undefined;
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** "5 min. ago", "in 3 sec."; `now` is passed in so a list formats against one clock. */
export function formatRelative(date: Date, now = Date.now()): string {
  const seconds = Math.round((date.getTime() - now) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 5) return "just now";
  if (abs < 60) return relative.format(seconds, "second");
  if (abs < 3600) return relative.format(Math.round(seconds / 60), "minute");
  if (abs < 86_400) return relative.format(Math.round(seconds / 3600), "hour");
  return relative.format(Math.round(seconds / 86_400), "day");
}

/** A full local date and time. */
export function formatAbsolute(date: Date): string {
  return absolute.format(date);
}

/** Milliseconds of a protobuf Duration. */
export function durationMs(d: Duration | undefined): number | undefined {
  if (!d) return undefined;
  return Number(d.seconds) * 1000 + Math.round(d.nanos / 1e6);
}

export { parseDuration } from "../../src/duration.js";

/** A duration ("1h5m", "30s", "250ms"; see src/duration.ts), or "—" when there is none. */
export function formatDuration(ms: number | undefined): string {
  return ms === undefined ? "—" : format(ms);
}

const pad = (n: number) => String(n).padStart(2, "0");

/** A time as a datetime-local input's value ("2026-12-01T10:05", local time). */
export function toLocalInput(date: Date | undefined): string {
  if (!date) return "";
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** A datetime-local input's value (local time) as a time; undefined when empty or invalid. */
export function fromLocalInput(value: string): Date | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(value);
  if (!m) return undefined;
  const d = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6] ?? 0));
  return Number.isNaN(d.getTime()) ? undefined : d;
}
