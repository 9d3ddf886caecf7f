import { formatLabels } from "../labels.js";
import { durationToMs } from "../api/convert.js";
import { formatDuration } from "../duration.js";
import { CatchUpPolicy, OverlapPolicy, type ListSchedulesResponse, type Schedule } from "../gen/task/v1/schedule_pb.js";
import { TaskStatus, type Task } from "../gen/task/v1/task_pb.js";
import { humanTime, isoTime, keyValueTable, makeTable, statusName, truncate } from "./output.js";

/** skip, latest, backfill (UNSPECIFIED is the default, skip). */
export function catchUpName(policy: CatchUpPolicy): string {
  return (CatchUpPolicy[policy === CatchUpPolicy.UNSPECIFIED ? CatchUpPolicy.SKIP : policy] ?? String(policy)).toLowerCase();
}

/** allow, skip, cancel_previous (UNSPECIFIED is the default, allow). */
export function overlapName(policy: OverlapPolicy): string {
  return (OverlapPolicy[policy === OverlapPolicy.UNSPECIFIED ? OverlapPolicy.ALLOW : policy] ?? String(policy)).toLowerCase();
}

function lastRun(s: Schedule): string {
  if (!s.lastRunAt) return "-";
  const status = s.lastTaskStatus === TaskStatus.UNSPECIFIED ? "" : ` ${statusName(s.lastTaskStatus)}`;
  return `${humanTime(s.lastRunAt)} #${s.lastTaskId}${status}`;
}

/** Schedules one line each: name, expression, zone, next run, last run and its status, paused. */
export function scheduleListTable(res: ListSchedulesResponse): string {
  if (res.schedules.length === 0) return "no schedules";
  const table = makeTable(["NAME", "CRON", "ZONE", "TYPE", "NEXT RUN", "LAST RUN", "PAUSED"]);
  for (const s of res.schedules) {
    const spec = s.spec!;
    table.push([
      truncate(spec.name, 28),
      spec.cron,
      spec.timeZone,
      spec.task?.type ?? "-",
      s.nextRunAt ? `${isoTime(s.nextRunAt)} (${humanTime(s.nextRunAt)})` : "-",
      lastRun(s),
      spec.paused ? "yes" : "no",
    ]);
  }
  return table.toString();
}

/** One schedule as key/value lines, with the tasks it created most recently. */
export function scheduleTable(s: Schedule | undefined, recent: Task[] = []): string {
  if (!s?.spec) return "(no schedule)";
  const spec = s.spec;
  const task = spec.task;
  const rows: [string, string][] = [
    ["ID", s.id.toString()],
    ["Name", spec.name],
    ["Cron", spec.cron],
    ["Time zone", spec.timeZone],
    ["Type", task?.type ?? "-"],
    ["Parameters", truncate(JSON.stringify(task?.parameters ?? {}), 80)],
    ["Priority", String(task?.priority ?? 0)],
    ["Max attempts", task?.maxAttempts ? String(task.maxAttempts) : "type default"],
    ["Timeout", task?.timeout ? formatDuration(durationToMs(task.timeout)) : "type default"],
    ...(task && Object.keys(task.labels).length > 0 ? [["Runs on", `workers with labels ${formatLabels(task.labels)}`] as [string, string]] : []),
    ["Catch-up", spec.catchUp === CatchUpPolicy.BACKFILL ? `backfill (up to ${spec.backfillLimit})` : catchUpName(spec.catchUp)],
    ["Overlap", overlapName(spec.overlap)],
    ["Paused", spec.paused ? "yes" : "no"],
    ["Next run", s.nextRunAt ? `${isoTime(s.nextRunAt)} (${humanTime(s.nextRunAt)})` : "-"],
    ["Last run", s.lastRunAt ? `${isoTime(s.lastRunAt)}: task ${s.lastTaskId} ${statusName(s.lastTaskStatus)}` : "-"],
  ];
  if (s.lastError) rows.push(["Last problem", truncate(s.lastError, 100)]);
  let text = keyValueTable(rows);
  if (recent.length > 0) {
    const table = makeTable(["TASK", "SCHEDULED AT", "STATUS", "FINISHED"]);
    for (const t of recent) table.push([t.id.toString(), isoTime(t.scheduledAt), statusName(t.status), humanTime(t.finishedAt)]);
    text += `\nRecent tasks:\n${table.toString()}`;
  }
  return text;
}
