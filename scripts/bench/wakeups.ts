/**
 * Wake-up latencies: how soon an event reaches the process that acts on it. These were bounds in
 * tests (test/queues-workers, test/schedule-processes, test/faults/worker-faults), which a shared
 * machine made flaky; the tests now check the behaviour with a deadline well under the fallback
 * poll, and the figures live here. Each is measured on PostgreSQL's clock, against a real
 * `task-cli server` and `task-cli serve` processes whose poll is a minute, so only a notification
 * can explain a quick start.
 */
import { spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { cliNodeFlags } from "../../bin/node-flags.js";
import { QueueService } from "../../src/gen/task/v1/queue_pb.js";
import { ScheduleService } from "../../src/gen/task/v1/schedule_pb.js";
import { TaskService } from "../../src/gen/task/v1/task_pb.js";
import type { Db } from "../../src/store/db.js";
import { cliPath } from "./processes.js";
import { formatPercentiles, percentiles, type Percentiles } from "./stats.js";

/** The figures, the targets the tests used to assert, and the lines the bench prints. */
export interface Wakeups {
  figures: { resumeToStartMs: Percentiles; limitedQueueStartMs: Percentiles; scheduleLagMs: Percentiles };
  targets: Array<[string, boolean]>;
  lines: string[];
}

/** A minute's poll: a start sooner than that was woken by a notification. */
const POLL_MS = 60_000;

async function until<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`wakeups: timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** `task-cli serve` for these queues with a minute's poll, once registered; returns its stop. */
async function serveWithSlowPoll(db: Db, databaseUrl: string, dataDir: string, queues: string[]): Promise<() => Promise<void>> {
  const child = spawn(process.execPath, [...cliNodeFlags(), cliPath, "serve", "-n", "4", "--queues", queues.join(",")], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: databaseUrl, TASK_DATA_DIR: dataDir, TASK_POLL_INTERVAL_MS: String(POLL_MS), LOG_LEVEL: "error" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  await until(async () => {
    if (child.exitCode !== null) throw new Error(`wakeups: serve exited with ${child.exitCode}`);
    const { rowCount } = await db.pool.query("select 1 from workers where id like $1 and lock_key is not null", [`%-${child.pid}-%`]);
    return rowCount === 1 || undefined;
  }, "the worker process to register");
  return async () => {
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    await exited;
    clearTimeout(timer);
  };
}

const dbNow = async (db: Db) => (await db.pool.query<{ t: Date }>("select clock_timestamp() as t")).rows[0]!.t.getTime();
const startedAt = (db: Db, ids: bigint[]) =>
  until(async () => {
    const { rows } = await db.pool.query<{ started_at: Date | null }>("select started_at from tasks where id = any($1::bigint[])", [ids.map(String)]);
    return rows.length === ids.length && rows.every((r) => r.started_at) ? rows.map((r) => r.started_at!.getTime()) : undefined;
  }, `tasks ${ids.join(", ")} to start`);

/**
 * Runs the three measurements, `trials` times each for the queues (the schedule's ticks are
 * counted over about `trials` seconds), against the API at `serverUrl`.
 */
export async function benchWakeups(db: Db, databaseUrl: string, serverUrl: string, dataDir: string, trials = 5): Promise<Wakeups> {
  const transport = createConnectTransport({ baseUrl: serverUrl, httpVersion: "1.1" });
  const tasks = createClient(TaskService, transport);
  const queues = createClient(QueueService, transport);
  const schedules = createClient(ScheduleService, transport);
  await db.pool.query("insert into queues (name, concurrency) values ('bench_limited', 2) on conflict (name) do update set concurrency = 2, paused = false");
  const stop = await serveWithSlowPoll(db, databaseUrl, dataDir, ["bench_paused", "bench_limited", "bench_other"]);
  const resume: number[] = [];
  const limited: number[] = [];
  try {
    for (let i = 0; i < trials; i++) {
      // Paused queue: three tasks wait; resume, then the last of them starts.
      await queues.pauseQueue({ name: "bench_paused" });
      const { tasks: held } = await tasks.createTasks({ tasks: [1, 2, 3].map((n) => ({ name: `held-${i}-${n}`, type: "noop", queue: "bench_paused" })) });
      await sleep(200);
      const resumedAt = await dbNow(db);
      await queues.resumeQueue({ name: "bench_paused" });
      resume.push(Math.max(...(await startedAt(db, held.map((t) => t.id)))) - resumedAt);

      // Limited queue left alone after a claim found nothing in it (other queues' tasks drained
      // meanwhile): a task arriving in it starts on its jobs:insert notification.
      const { tasks: other } = await tasks.createTasks({ tasks: Array.from({ length: 10 }, (_, n) => ({ name: `other-${i}-${n}`, type: "noop", queue: "bench_other" })) });
      await startedAt(db, other.map((t) => t.id));
      await sleep(100);
      const { task } = await tasks.createTask({ name: `limited-${i}`, type: "noop", queue: "bench_limited" });
      await startedAt(db, [task!.id]);
      const { rows } = await db.pool.query<{ ms: number }>("select extract(epoch from started_at - created_at) * 1000 as ms from tasks where id = $1", [String(task!.id)]);
      limited.push(Number(rows[0]!.ms));
    }
  } finally {
    await stop();
  }

  // A schedule every second on the server's scheduler: how long after its tick each task is created.
  const { schedule } = await schedules.createSchedule({ spec: { name: "bench-every-second", cron: "* * * * * *", timeZone: "UTC", task: { type: "noop" } } });
  const id = String(schedule!.id);
  await until(async () => {
    const { rows } = await db.pool.query<{ n: number }>("select count(*)::int as n from tasks where schedule_id = $1", [id]);
    return rows[0]!.n >= trials + 1 || undefined;
  }, "the schedule's ticks", 30_000 + trials * 2_000);
  await schedules.pauseSchedule({ name: "bench-every-second" });
  const { rows } = await db.pool.query<{ lag: number }>(
    "select extract(epoch from created_at - scheduled_at) * 1000 as lag from tasks where schedule_id = $1 order by scheduled_at",
    [id],
  );
  const lags = rows.map((r) => Number(r.lag));

  const figures = { resumeToStartMs: percentiles(resume), limitedQueueStartMs: percentiles(limited), scheduleLagMs: percentiles(lags) };
  const met = (ok: boolean) => (ok ? "met" : "NOT met");
  const targets: Array<[string, boolean]> = [
    ["queue resume → start", figures.resumeToStartMs.max < 1_500],
    ["limited queue create → start", figures.limitedQueueStartMs.max < 2_000],
    ["schedule tick → task", figures.scheduleLagMs.p50 < 1_000 && figures.scheduleLagMs.max < 10_000],
  ];
  const lines = [
    `  queue resume → last of 3 started   ${formatPercentiles(figures.resumeToStartMs)}   target max < 1500 ms ${met(targets[0]![1])} (poll ${POLL_MS / 1000} s)`,
    `  limited queue create → start       ${formatPercentiles(figures.limitedQueueStartMs)}   target max < 2000 ms ${met(targets[1]![1])} (poll ${POLL_MS / 1000} s)`,
    `  schedule tick → task created       ${formatPercentiles(figures.scheduleLagMs)}   target p50 < 1000, max < 10000 ms ${met(targets[2]![1])}`,
  ];
  return { figures, targets, lines };
}
