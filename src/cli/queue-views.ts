import { formatLabels } from "../labels.js";
import { durationToMs } from "../api/convert.js";
import { formatDuration } from "../duration.js";
import type { ListQueuesResponse, ListWorkersResponse, Queue } from "../gen/task/v1/queue_pb.js";
import type { ListTaskTypesResponse } from "../gen/task/v1/task_pb.js";
import { humanTime, keyValueTable, makeTable, truncate } from "./output.js";
import { DEFAULT_COLUMNS } from "./io.js";

/** A queue's limit as a person reads it. */
function limitText(q: Queue): string {
  return q.concurrency === undefined ? "unlimited" : String(q.concurrency);
}

/** Every queue, one line each; a queue no worker serves says so. */
export function queueListTable(res: ListQueuesResponse): string {
  if (res.queues.length === 0) return "no queues (every task is in \"default\" unless it names another)";
  const table = makeTable(["QUEUE", "PAUSED", "LIMIT", "RUNNING", "WAITING", "OLDEST WAITING", "WORKERS"]);
  for (const q of res.queues) {
    table.push([
      q.name,
      q.paused ? "yes" : "no",
      limitText(q),
      q.running.toString(),
      q.waiting.toString(),
      q.oldestWaitingAge ? formatDuration(Math.round(durationToMs(q.oldestWaitingAge))) : "-",
      q.workers === 0 ? "0 (none serves it)" : String(q.workers),
    ]);
  }
  return table.toString();
}

/** One queue, as key/value lines. */
export function queueTable(q: Queue | undefined): string {
  if (!q) return "(no queue)";
  return keyValueTable([
    ["Queue", q.name],
    ["Paused", q.paused ? "yes: no new attempts start" : "no"],
    ["Limit", limitText(q)],
    ["Expiry", q.expireAfter ? `tasks not started ${formatDuration(Math.round(durationToMs(q.expireAfter)))} after they are due end EXPIRED (unless they set their own)` : "none"],
    ["Running", q.running.toString()],
    ["Waiting", q.waiting.toString()],
    ["Workers", String(q.workers)],
    ...(q.keyTemplate ? [["Key template", q.keyTemplate] as [string, string]] : []),
    ...(q.keyConcurrency !== undefined ? [["Limit per key", String(q.keyConcurrency)] as [string, string]] : []),
    ...(Object.keys(q.keyLimits).length > 0
      ? [["Key limits", Object.entries(q.keyLimits).sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k}=${n}`).join(" ")] as [string, string]]
      : []),
    ...(Object.keys(q.keyWeights).length > 0
      ? [["Key weights", Object.entries(q.keyWeights).sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k}=${n}`).join(" ")] as [string, string]]
      : []),
  ]) + keyUseTable(q);
}

/** Each key's use of its limit (GetQueue), after the queue's lines; nothing for a queue without key limits. */
function keyUseTable(q: Queue): string {
  if (q.keyUse.length === 0) return "";
  const table = makeTable(["KEY", "RUNNING", "LIMIT", "WAITING", "WAITING FOR"]);
  for (const k of q.keyUse) table.push([k.key, k.running.toString(), k.limit === undefined ? "unlimited" : String(k.limit), k.waiting.toString(), k.waitReason || "-"]);
  return `\n${table.toString()}`;
}

/**
 * Live workers, one line each, and then the task types no live worker runs (their tasks wait
 * QUEUED), when `types` is given.
 */
export function workerListTable(res: ListWorkersResponse, types: ListTaskTypesResponse | undefined, width = DEFAULT_COLUMNS): string {
  const lines: string[] = [];
  if (res.workers.length === 0) lines.push("no live workers (start one with `task-cli serve`)");
  else {
    const table = makeTable(["ID", "HOST", "PID", "BUSY", "QUEUES", "TYPES", "LABELS", "HEARTBEAT"]);
    const flexible = Math.max(20, Math.floor((width - 64) / 4));
    for (const w of res.workers) {
      table.push([
        truncate(w.id, flexible),
        truncate(w.host, 20),
        w.pid ? String(w.pid) : "-",
        `${w.busy}/${w.slots}`,
        truncate(w.queues.join(","), flexible),
        truncate(w.types.join(","), flexible),
        truncate(formatLabels(w.labels) || "-", flexible),
        humanTime(w.lastHeartbeatAt),
      ]);
    }
    lines.push(table.toString());
    const agents = res.workers.filter((w) => w.agentName !== "");
    if (agents.length > 0) lines.push(agentTable(agents));
  }
  const unserved = (types?.types ?? []).filter((t) => t.liveWorkers === 0).map((t) => t.name);
  if (unserved.length > 0) lines.push(`no live worker runs: ${unserved.join(", ")} (their tasks wait QUEUED)`);
  // Tasks that require labels no live worker or agent has: they wait until one with those labels starts.
  const unmatched = res.unmatched.reduce((n, u) => n + Number(u.waiting), 0);
  if (unmatched > 0) {
    const sets = res.unmatched.map((u) => `${formatLabels(u.labels)} (${u.waiting})`).join(", ");
    lines.push(`${unmatched} waiting task${unmatched === 1 ? "" : "s"} require labels no live worker or agent has: ${sets}`);
  }
  return lines.join("\n");
}

/** The remote agents among the live workers: where each is connected from and to, its version and last heartbeat. */
function agentTable(agents: ListWorkersResponse["workers"]): string {
  const table = makeTable(["AGENT", "ADDRESS", "REPLICA", "VERSION", "SLOTS IN USE", "LAST SEEN"]);
  for (const a of agents) {
    table.push([truncate(a.agentName, 30), a.address || "-", truncate(a.replica || "-", 30), a.version || "-", `${a.busy}/${a.slots}`, humanTime(a.lastHeartbeatAt)]);
  }
  return `agents:\n${table.toString()}`;
}
