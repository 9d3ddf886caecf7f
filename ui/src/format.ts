import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";
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

const TERMINAL = new Set([TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED]);

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
  return status === TaskStatus.FAILED || status === TaskStatus.CANCELLED;
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

/** "1h 5m", "30s", "250ms". */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined) return "—";
  if (ms < 1000) return `${ms}ms`;
  const parts: string[] = [];
  let s = Math.round(ms / 1000);
  for (const [unit, size] of [["d", 86_400], ["h", 3600], ["m", 60]] as const) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  if (s > 0 || parts.length === 0) parts.push(`${s}s`);
  return parts.join(" ");
}

/** Parses "90s", "5m", "1h30m", "250ms" or a bare number of seconds into milliseconds; undefined if not a duration. */
export function parseDuration(text: string): number | undefined {
  const t = text.trim();
  if (t === "") return undefined;
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t) * 1000;
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let end = 0;
  for (const m of t.matchAll(re)) {
    total += Number(m[1]) * units[m[2]!]!;
    end = m.index! + m[0].length;
  }
  return end === t.length && end > 0 ? total : undefined;
}
