/**
 * What flow control costs the drain (issue 27: "drain of tasks with a key and no limit hit ≥ 0.8× the
 * drain without keys, in the same bench run"), and what a rate limit costs and delivers.
 *
 * Three drains of N pre-created no-ops, each by one fresh serve process: without keys (`none`), with
 * keys spread over `keys` keys and no limit (`keyed`: the keys take turns), and under a rate limit so
 * large it is never hit (`limited`: one claim statement per start, through the bucket). One round runs
 * all three, in an order that rotates from round to round (the first drain after a pause tends to run
 * slower), and each round gives its own ratios keyed/none and limited/none: drains next to each other
 * see about the same load, where the same drain ranged 4x over a few minutes on the shared machine.
 * The figures are the medians of those ratios, with their spread (lowest, highest).
 *
 * The drain under the limit never hit has at most LIMITED_TASKS tasks a round (it runs several times
 * slower); its rate is per second all the same.
 *
 * Then a limit that is hit: `hit.tasks` no-ops under 20/s with burst 5, and the starts counted
 * against what the limit allowed between the first start and the last (burst + rate × that time):
 * used ≤ allowed is the guarantee, used near allowed says the waiting workers wake in time.
 *
 * Last, fairness (issue 27: "key A enqueues 20,000 tasks, then key B enqueues 20; B's tasks all start
 * within 2 s"): `fairness.backlog` no-ops of key A (4 × N, at most 20,000), a serve process draining
 * them, then 20 of key B in one call; the figure is from B's create to its last start, on the
 * database's clock, and how many of A's started meanwhile. The test (test/key-processes.test.ts)
 * asserts the turns; the time is a measurement, so it is here.
 */
import type { Client } from "@connectrpc/connect";
import type { TaskService } from "../../src/gen/task/v1/task_pb.js";
import type { Db } from "../../src/store/db.js";
import { deleteRateLimit, setRateLimit } from "../../src/store/rate-limits.js";
import { drainRate, lastTaskId, untilDrained } from "./ours.js";
import { startServeProcess } from "./processes.js";
import { median } from "./stats.js";

/** A ratio's median over the rounds, and its spread. */
export interface RatioSpread {
  median: number;
  low: number;
  high: number;
}

/** The drains' figures (tasks per second) and their ratios to the drain without keys or limits. */
export interface FlowDrains {
  tasks: number;
  /** Tasks of each drain under the limit never hit. */
  limitedTasks: number;
  keys: number;
  /** Each round's three rates, in the order they ran. */
  rounds: { order: Kind[]; none: number; keyed: number; limited: number }[];
  /** Medians of the rounds' rates. */
  perSec: { none: number; keyed: number; limited: number };
  /** keyed / none, round by round. */
  keyed: RatioSpread;
  /** limited / none, round by round. */
  limited: RatioSpread;
  /** Key B's 20 tasks after key A's backlog: seconds from their create to the last one's start. */
  fairness: { backlog: number; seconds: number; aMeanwhile: number };
  /** The limit that is hit. */
  hit: { tasks: number; rate: number; burst: number; seconds: number; allowed: number; used: number; ratio: number; peakSecond: number };
}

type Kind = "none" | "keyed" | "limited";

/** The queue each drain's tasks are in (the limit never hit covers `bench-rate`). */
const QUEUE: Record<Kind, string> = { none: "bench-keys", keyed: "bench-keys", limited: "bench-rate" };
/** Well below what the limited claim path starts a second (see `limited`), so the limit is what paces it. */
const HIT = { queue: "bench-hit", rate: 20, burst: 5, seconds: 10 };
/** The drain under a limit never hit starts one task per statement: at most this many a round keep the rounds short. */
const LIMITED_TASKS = 1_000;
/** Key B's tasks, created after key A's backlog. */
const FAIR_B = 20;

const spread = (values: number[]): RatioSpread => ({ median: median(values), low: Math.min(...values), high: Math.max(...values) });

/** Runs the comparison (see the module comment). */
export async function flowDrains(
  db: Db,
  client: Client<typeof TaskService>,
  o: { databaseUrl: string; dataDir: string; concurrency: number; tasks: number; batch: number; keys: number; rounds: number; registered: (pid: number) => Promise<boolean> },
): Promise<FlowDrains> {
  const create = async (total: number, queue: string, prefix: string, key: (i: number) => string) => {
    for (let i = 0; i < total; i += o.batch) {
      const n = Math.min(o.batch, total - i);
      await client.createTasks({ tasks: Array.from({ length: n }, (_, j) => ({ name: `${prefix}-${i + j}`, type: "noop", queue, key: key(i + j) })) });
    }
  };
  const serveUntilDrained = async (queue: string, dataDir: string) => {
    const serve = await startServeProcess(o.databaseUrl, dataDir, o.concurrency, o.registered, { TASK_QUEUES: queue });
    try {
      await untilDrained(db);
    } finally {
      await serve.stop();
    }
  };
  const drain = async (kind: Kind, round: number): Promise<number> => {
    const after = await lastTaskId(db);
    await create(kind === "limited" ? Math.min(o.tasks, LIMITED_TASKS) : o.tasks, QUEUE[kind], `${kind}-${round}`, (i) => (kind === "keyed" ? `tenant-${i % o.keys}` : ""));
    await serveUntilDrained(QUEUE[kind], `${o.dataDir}-${kind}-${round}`);
    return drainRate(db, after);
  };

  // Never hit: a million a second, a million at once.
  await setRateLimit(db.kysely, { name: "bench-never-hit", rate: 1_000_000, periodMs: 1_000, burst: 1_000_000, perKey: false, queue: QUEUE.limited, taskType: null });
  await setRateLimit(db.kysely, { name: "bench-hit", rate: HIT.rate, periodMs: 1_000, burst: HIT.burst, perKey: false, queue: HIT.queue, taskType: null });
  try {
    const kinds: Kind[] = ["none", "keyed", "limited"];
    const rounds: FlowDrains["rounds"] = [];
    for (let round = 0; round < o.rounds; round++) {
      const order = kinds.map((_, i) => kinds[(i + round) % kinds.length]!);
      const rates: Partial<Record<Kind, number>> = {};
      for (const kind of order) rates[kind] = await drain(kind, round);
      rounds.push({ order, none: rates.none!, keyed: rates.keyed!, limited: rates.limited! });
    }

    const hitTasks = Math.min(o.tasks, HIT.rate * HIT.seconds);
    const after = await lastTaskId(db);
    await create(hitTasks, HIT.queue, "hit", () => "");
    await serveUntilDrained(HIT.queue, `${o.dataDir}-hit`);
    const { rows } = await db.pool.query("select extract(epoch from started_at) * 1000 as at from tasks where id > $1 and queue = $2 order by started_at", [after, HIT.queue]);
    const starts = rows.map((r) => Number(r.at));
    const seconds = (starts.at(-1)! - starts[0]!) / 1000;
    const allowed = HIT.burst + HIT.rate * seconds;
    let peakSecond = 0;
    for (let i = 0, j = 0; i < starts.length; i++) {
      while (j < starts.length && starts[j]! <= starts[i]! + 1_000) j++;
      peakSecond = Math.max(peakSecond, j - i);
    }
    const fairness = await fairTurns(db, client, o, create);
    return {
      fairness,
      tasks: o.tasks,
      limitedTasks: Math.min(o.tasks, LIMITED_TASKS),
      keys: o.keys,
      rounds,
      perSec: { none: median(rounds.map((r) => r.none)), keyed: median(rounds.map((r) => r.keyed)), limited: median(rounds.map((r) => r.limited)) },
      keyed: spread(rounds.map((r) => r.keyed / r.none)),
      limited: spread(rounds.map((r) => r.limited / r.none)),
      hit: { tasks: starts.length, rate: HIT.rate, burst: HIT.burst, seconds, allowed, used: starts.length, ratio: starts.length / allowed, peakSecond },
    };
  } finally {
    await deleteRateLimit(db.kysely, "bench-never-hit");
    await deleteRateLimit(db.kysely, "bench-hit");
  }
}

/** The fairness figure (see the module comment): A's backlog drained by one serve process, B's 20 created while it runs. */
async function fairTurns(
  db: Db,
  client: Client<typeof TaskService>,
  o: { databaseUrl: string; dataDir: string; concurrency: number; tasks: number; registered: (pid: number) => Promise<boolean> },
  create: (total: number, queue: string, prefix: string, key: (i: number) => string) => Promise<void>,
): Promise<FlowDrains["fairness"]> {
  const queue = "bench-fair";
  const backlog = Math.min(20_000, 4 * o.tasks);
  const after = await lastTaskId(db);
  await create(backlog, queue, "fair-a", () => "A");
  const serve = await startServeProcess(o.databaseUrl, `${o.dataDir}-fair`, o.concurrency, o.registered, { TASK_QUEUES: queue });
  try {
    // A's drain is under way: a few of its tasks have started.
    const started = async () => Number((await db.pool.query("select count(*) as n from tasks where id > $1 and started_at is not null", [after])).rows[0].n);
    while ((await started()) < Math.min(backlog / 2, 2 * o.concurrency)) await new Promise((r) => setTimeout(r, 5));
    const { tasks } = await client.createTasks({ tasks: Array.from({ length: FAIR_B }, (_, i) => ({ name: `fair-b-${i}`, type: "noop", queue, key: "B" })) });
    const ids = tasks.map((t) => t.id.toString());
    const measure = async () =>
      (
        await db.pool.query(
          `select count(*) filter (where started_at is null) as waiting, extract(epoch from max(started_at) - min(created_at)) as s,
                  (select count(*) from tasks a where a.id > $2 and a.key = 'A' and a.started_at > min(b.created_at) and a.started_at <= max(b.started_at)) as a_meanwhile
           from tasks b where b.id = any($1::bigint[])`,
          [ids, after],
        )
      ).rows[0];
    let row = await measure();
    while (Number(row.waiting) > 0) {
      await new Promise((r) => setTimeout(r, 10));
      row = await measure();
    }
    await untilDrained(db);
    return { backlog, seconds: Number(row.s), aMeanwhile: Number(row.a_meanwhile) };
  } finally {
    await serve.stop();
  }
}

/** The bench's lines for these figures (the table's rows are `row(figure, ours, baseline, ratio, goal)`). */
export function flowDrainLines(f: FlowDrains, row: (figure: string, ours: string, baseline: string, ratio: string, goal: string) => string, met: (ok: boolean) => string): string[] {
  const n = (v: number) => v.toFixed(0);
  const r = (v: number) => v.toFixed(2);
  const range = (s: RatioSpread) => `${r(s.low)}-${r(s.high)}`;
  return [
    row(`drain with ${f.keys} keys, no limit hit`, `${n(f.perSec.keyed)}/s`, `no keys ${n(f.perSec.none)}/s`, r(f.keyed.median), `≥ 0.8 ${met(f.keyed.median >= 0.8)}`),
    row(`  under a rate limit never hit (${f.limitedTasks} a drain)`, `${n(f.perSec.limited)}/s`, `no limit ${n(f.perSec.none)}/s`, r(f.limited.median), "(no target; a claim statement a start)"),
    `    medians of ${f.rounds.length} rounds of ${f.tasks} (order rotating), ratios keyed ${range(f.keyed)}, limited ${range(f.limited)}; each round none/keyed/limited: ${f.rounds.map((x) => `${n(x.none)}/${n(x.keyed)}/${n(x.limited)}`).join(", ")}/s`,
    row(
      `rate limit hit: ${f.hit.rate}/s burst ${f.hit.burst}, ${f.hit.tasks} tasks`,
      `${f.hit.used} started`,
      `allowed ${f.hit.allowed.toFixed(1)}`,
      r(f.hit.ratio),
      `≥ 0.95, ≤ 1.00 ${met(f.hit.ratio >= 0.95 && f.hit.ratio <= 1)} (busiest second ${f.hit.peakSecond} ≤ ${f.hit.burst + f.hit.rate})`,
    ),
    row(`fairness: ${FAIR_B} of key B after ${f.fairness.backlog} of A`, `${f.fairness.seconds.toFixed(2)} s`, `${f.fairness.aMeanwhile} of A meanwhile`, "", `≤ 2 s ${met(f.fairness.seconds <= 2)}`),
  ];
}
