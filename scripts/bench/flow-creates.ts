/**
 * What flow control costs a create (issue 27's "flow control costs little", at the create): single
 * CreateTask calls, `concurrency` in flight, plain against the same calls with a key (its turn is
 * looked up), with an expiry (`expire_after`, an index entry), and with `unique_while` (a window;
 * each key new, so each is created: the create's own transaction, the key's advisory lock and one
 * index read). One round makes the four kinds in an order that rotates from round to round; the
 * figures are the medians of each round's ratio to plain, with their spread. The tasks are then
 * drained by one serve process, so the bench's later phases find no task waiting.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import type { CreateTaskRequestSchema, TaskService } from "../../src/gen/task/v1/task_pb.js";
import type { Db } from "../../src/store/db.js";
import { untilDrained } from "./ours.js";
import { startServeProcess } from "./processes.js";
import { median } from "./stats.js";
import type { RatioSpread } from "./keys.js";

type Kind = "plain" | "keyed" | "expiring" | "unique";
const KINDS: Kind[] = ["plain", "keyed", "expiring", "unique"];
const QUEUE = "bench-creates";
const MINUTES_10 = { seconds: 600n };

/** Creates per second of each kind (medians), and each kind's ratio to plain, round by round. */
export interface FlowCreates {
  creates: number;
  concurrency: number;
  perSec: Record<Kind, number>;
  ratios: Record<Exclude<Kind, "plain">, RatioSpread>;
  rounds: Record<Kind, number>[];
}

/** The create request of call `i` of a kind in a round. */
function request(kind: Kind, round: number, i: number): MessageInitShape<typeof CreateTaskRequestSchema> {
  const base = { name: `${kind}-${round}-${i}`, type: "noop", queue: QUEUE };
  if (kind === "keyed") return { ...base, key: `tenant-${i % 20}` };
  if (kind === "expiring") return { ...base, expireAfter: MINUTES_10 };
  if (kind === "unique") return { ...base, key: `u-${round}-${i}`, uniqueWhile: { mode: { case: "window", value: MINUTES_10 } } };
  return base;
}

/** Runs the comparison (see the module comment). */
export async function flowCreates(
  db: Db,
  client: Client<typeof TaskService>,
  o: { databaseUrl: string; dataDir: string; creates: number; concurrency: number; rounds: number; registered: (pid: number) => Promise<boolean> },
): Promise<FlowCreates> {
  const make = async (kind: Kind, round: number): Promise<number> => {
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: o.concurrency }, async () => {
        while (next < o.creates) await client.createTask(request(kind, round, next++));
      }),
    );
    return o.creates / ((performance.now() - t0) / 1000);
  };
  const rounds: Record<Kind, number>[] = [];
  for (let round = 0; round < o.rounds; round++) {
    const rates = {} as Record<Kind, number>;
    for (let i = 0; i < KINDS.length; i++) {
      const kind = KINDS[(i + round) % KINDS.length]!;
      rates[kind] = await make(kind, round);
    }
    rounds.push(rates);
  }
  const serve = await startServeProcess(o.databaseUrl, o.dataDir, 10, o.registered, { TASK_QUEUES: QUEUE });
  try {
    await untilDrained(db);
  } finally {
    await serve.stop();
  }
  const ratio = (kind: Kind): RatioSpread => {
    const values = rounds.map((r) => r[kind] / r.plain);
    return { median: median(values), low: Math.min(...values), high: Math.max(...values) };
  };
  const perSec = Object.fromEntries(KINDS.map((k) => [k, median(rounds.map((r) => r[k]))])) as Record<Kind, number>;
  return { creates: o.creates, concurrency: o.concurrency, perSec, ratios: { keyed: ratio("keyed"), expiring: ratio("expiring"), unique: ratio("unique") }, rounds };
}

/** The bench's lines for these figures. */
export function flowCreateLines(f: FlowCreates, row: (figure: string, ours: string, baseline: string, ratio: string, goal: string) => string): string[] {
  const n = (v: number) => v.toFixed(0);
  const r = (v: number) => v.toFixed(2);
  const line = (kind: Exclude<Kind, "plain">, figure: string) =>
    row(figure, `${n(f.perSec[kind])}/s`, `plain ${n(f.perSec.plain)}/s`, r(f.ratios[kind].median), `(no target; rounds ${r(f.ratios[kind].low)}-${r(f.ratios[kind].high)})`);
  return [
    line("keyed", `CreateTask single at ${f.concurrency}, with a key`),
    line("expiring", "  with expire_after"),
    line("unique", "  with unique_while (a window, new keys)"),
    `    medians of ${f.rounds.length} rounds of ${f.creates} each (order rotating); each round plain/keyed/expiring/unique: ${f.rounds.map((x) => `${n(x.plain)}/${n(x.keyed)}/${n(x.expiring)}/${n(x.unique)}`).join(", ")}/s`,
  ];
}
