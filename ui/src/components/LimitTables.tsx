import type { RateLimit } from "../../../src/gen/task/v1/limit_pb.js";
import type { QueueKeyUse } from "../../../src/gen/task/v1/queue_pb.js";
import { durationMs, formatDuration } from "../format";
import { DataTable, type Column } from "./DataTable";

const PERIODS = new Map([
  [1_000, "s"],
  [60_000, "min"],
  [3_600_000, "h"],
  [86_400_000, "day"],
]);

/** "60/min", "5/s", or "100/30s" for a period without a name. */
export function formatRate(l: Pick<RateLimit, "rate" | "period">): string {
  const ms = durationMs(l.period) ?? 0;
  return `${l.rate}/${PERIODS.get(ms) ?? formatDuration(ms)}`;
}

const rateColumns: Column<RateLimit>[] = [
  { label: "Limit", cell: (l) => l.name },
  { label: "Scope", cell: (l) => (l.queue ? `queue ${l.queue}` : `type ${l.taskType}`) },
  { label: "Rate", cell: formatRate, testId: "rate" },
  { label: "Burst", cell: (l) => l.burst.toLocaleString() },
  { label: "Per key", cell: (l) => (l.perKey ? "yes" : "no") },
  {
    label: "Tokens left",
    // Below one, its tasks wait for the next unit; for a limit per key, the emptiest key's bucket.
    cell: (l) => <span className={l.tokens < 1 ? "tag" : undefined}>{l.tokens.toFixed(1)}</span>,
    testId: "tokens",
  },
  { label: "Waiting", cell: (l) => l.waiting.toLocaleString(), testId: "waiting" },
];

/** The rate limits with their use now (ListRateLimits). */
export function RateLimitTable({ limits }: { limits: RateLimit[] }) {
  return <DataTable caption="Rate limits, by name" className="limit-table" columns={rateColumns} rows={limits} rowKey={(l) => l.name} rowAttributes={(l) => ({ "data-limit": l.name })} />;
}

const keyColumns: Column<QueueKeyUse>[] = [
  { label: "Key", cell: (k) => k.key },
  { label: "Running", cell: (k) => (k.limit === undefined ? k.running.toLocaleString() : `${k.running.toLocaleString()} of ${k.limit}`), testId: "running" },
  { label: "Waiting", cell: (k) => k.waiting.toLocaleString(), testId: "waiting" },
  { label: "Waiting for", cell: (k) => k.waitReason || (k.waiting > 0n ? "a free slot" : "—"), testId: "wait-reason" },
];

/** Each key of a queue: RUNNING against its limit, waiting, and what holds the waiting (GetQueue's key_use). */
export function KeyUseTable({ queue, keys }: { queue: string; keys: QueueKeyUse[] }) {
  return <DataTable caption={`Keys of queue ${queue}, busiest first`} className="key-use-table" columns={keyColumns} rows={keys} rowKey={(k) => k.key} rowAttributes={(k) => ({ "data-key": k.key })} />;
}
