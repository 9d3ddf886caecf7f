/**
 * Chaos test: a real server and several worker processes on an embedded PostgreSQL, thousands of
 * tasks, kill -9 of workers at random moments, one PostgreSQL restart; then it checks that every
 * task is terminal, every history is a legal sequence, nothing succeeded twice, and no job is left.
 * Exits non-zero on any violation.  Usage: npm run chaos -- --tasks 5000 --workers 3 --kills 4
 */
import { setTimeout as sleep } from "node:timers/promises";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Command } from "commander";
import pg from "pg";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../src/embedded-postgres.js";
import { TaskService, TaskStatus, type CreateTaskRequest } from "../src/gen/task/v1/task_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CreateTaskRequestSchema } from "../src/gen/task/v1/task_pb.js";
import { createLogger } from "../src/logger.js";
import { loadTasksWithHistory } from "./chaos/audit.js";
import { openDb } from "../src/store/db.js";
import { migrate } from "../src/store/migrate.js";
import { checkTaskHistory } from "./chaos/check-history.js";
import { ChaosProcesses } from "./chaos/processes.js";
import { checkJobsLeft, exitWith, verdictLines } from "./chaos/verdict.js";

const options = new Command("chaos")
  .option("--tasks <n>", "tasks to create", "5000")
  .option("--workers <n>", "worker processes", "3")
  .option("--concurrency <n>", "jobs per worker process", "10")
  .option("--kills <n>", "kill -9 this many worker processes at random moments", "4")
  .option("--no-pg-restart", "skip the PostgreSQL restart")
  .option("--seed <n>", "random seed (default: time)")
  .option("--timeout <s>", "give up waiting after this many seconds", "900")
  .parse()
  .opts<{ tasks: string; workers: string; concurrency: string; kills: string; pgRestart: boolean; seed?: string; timeout: string }>();

const total = Number(options.tasks);
const workerCount = Number(options.workers);
const kills = Number(options.kills);
const seed = Number(options.seed ?? Date.now() % 1_000_000);
const deadline = Date.now() + Number(options.timeout) * 1000;

/** A small seeded PRNG (mulberry32), so a failing run can be replayed with --seed. */
function prng(s: number): () => number {
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(seed);
const between = (lo: number, hi: number) => Math.floor(lo + random() * (hi - lo));

type Kind = "quick" | "slow" | "doomed" | "flaky" | "shell";
type TaskInit = MessageInitShape<typeof CreateTaskRequestSchema>;

/** The task mix: mostly quick, some slow enough to be caught mid-run, some that fail on purpose. */
function makeTask(run: string, i: number): TaskInit {
  const r = random();
  const kind: Kind = r < 0.6 ? "quick" : r < 0.75 ? "slow" : r < 0.85 ? "doomed" : r < 0.95 ? "flaky" : "shell";
  const base = { name: `chaos-${run}-${kind}-${i}`, idempotencyKey: `chaos-${run}-${i}`, maxAttempts: 6 };
  switch (kind) {
    case "quick":
      return { ...base, type: "noop", parameters: { sleep_ms: between(0, 200) } };
    case "slow":
      return { ...base, type: "noop", parameters: { sleep_ms: between(1_000, 3_000) } };
    case "doomed":
      return { ...base, type: "noop", maxAttempts: 2, parameters: { fail: "planned failure" } };
    case "flaky":
      return { ...base, type: "shell", parameters: { command: '[ "$TASK_ATTEMPT" -ge 2 ] || { echo "first attempt fails" >&2; exit 7; }' } };
    case "shell":
      return { ...base, type: "shell", parameters: { command: `sleep 0.${between(0, 5)}; echo ok` } };
  }
}

function kindOf(name: string): Kind {
  return name.split("-")[2] as Kind;
}

const log = (msg: string) => process.stdout.write(`[chaos ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
const started = Date.now();

async function main(): Promise<number> {
  const run = seed.toString(36);
  const dir = await mkdtemp(path.join(os.tmpdir(), "task-chaos-"));
  const logger = createLogger("silent");
  let cluster: EmbeddedDatabase = await startEmbeddedPostgres(dir, logger);
  const setupDb = openDb({ connectionString: cluster.url }, logger);
  await migrate(setupDb, logger);
  await setupDb.close();
  log(`seed ${seed}; embedded PostgreSQL on port ${cluster.port}; ${total} tasks, ${workerCount} workers x ${options.concurrency}, ${kills} kills`);

  const procs = new ChaosProcesses(cluster.url, Number(options.concurrency));
  let exitCode = 1;
  try {
    const address = await procs.startServer();
    for (let i = 0; i < workerCount; i++) procs.startWorker();
    const client = createClient(TaskService, createConnectTransport({ baseUrl: address, httpVersion: "1.1" }));

    // Create in batches; creation keeps going through the chaos, retrying with the same
    // idempotency keys when the database is away.
    const batches: TaskInit[][] = [];
    for (let i = 0; i < total; i += 250) batches.push(Array.from({ length: Math.min(250, total - i) }, (_, j) => makeTask(run, i + j)));
    const creating = (async () => {
      for (const batch of batches) {
        for (let wait = 200; ; wait = Math.min(wait * 2, 3_000)) {
          try {
            await client.createTasks({ tasks: batch as CreateTaskRequest[] });
            break;
          } catch (err) {
            if (!(err instanceof ConnectError) || (err.code !== Code.Unavailable && err.code !== Code.Internal)) throw err;
            await sleep(wait);
          }
        }
        await sleep(between(20, 120));
      }
      log(`all ${total} tasks created`);
    })();

    // Chaos: kill -9 workers at random moments (each replaced by a fresh one), and restart
    // PostgreSQL once, after the second kill.
    let killed = 0;
    let restarted = !options.pgRestart;
    while (killed < kills || !restarted) {
      await sleep(between(1_500, 4_000));
      if (killed < kills) {
        const pid = await procs.killBusyWorker(() => busyWorkerPids(cluster.url));
        killed++;
        log(`kill -9 worker pid ${pid} (${killed}/${kills})`);
        await sleep(between(200, 1_000));
        procs.startWorker();
      }
      if (!restarted && killed >= Math.min(2, kills)) {
        log("stopping PostgreSQL");
        await cluster.stop();
        await sleep(2_000);
        cluster = await startEmbeddedPostgres(dir, logger);
        restarted = true;
        log("PostgreSQL is back");
      }
    }
    await creating;

    // Wait for every task to be terminal.
    for (let lastReport = 0; ; await sleep(500)) {
      if (procs.serverDied) throw new Error(procs.serverDied);
      const counts = await client.getTaskStatusCounts({}).catch(() => undefined);
      if (counts) {
        const done = counts.counts.filter((c) => [TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED].includes(c.status)).reduce((n, c) => n + Number(c.count), 0);
        if (Date.now() - lastReport > 5_000) {
          log(`${done}/${total} terminal`);
          lastReport = Date.now();
        }
        if (done >= total) break;
      }
      if (Date.now() > deadline) {
        log("timed out waiting for tasks to finish");
        break;
      }
    }
    await procs.stopAll();
    exitCode = await audit(cluster.url, run, killed, restarted && options.pgRestart);
  } finally {
    await procs.killAll();
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
  return exitCode;
}

/** The pids of worker processes with RUNNING attempts (worker ids are `host-pid-random`). */
async function busyWorkerPids(url: string): Promise<Set<number>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ worker_id: string }>("select distinct worker_id from tasks where status = 'running' and worker_id is not null");
    return new Set(rows.map((r) => Number(r.worker_id.split("-").at(-2))));
  } finally {
    await client.end();
  }
}

/** Checks and prints the outcome; returns the exit code. */
async function audit(url: string, run: string, killed: number, restarted: boolean): Promise<number> {
  const logger = createLogger("silent");
  const db = openDb({ connectionString: url }, logger);
  try {
    const tasks = await loadTasksWithHistory(db.kysely, `chaos-${run}-`);
    const violations: string[] = [];
    if (tasks.length !== total) violations.push(`expected ${total} tasks, found ${tasks.length}`);
    const byStatus = new Map<string, number>();
    const byKind = new Map<string, Map<string, number>>();
    let lostAttempts = 0;
    for (const task of tasks) {
      violations.push(...checkTaskHistory(task));
      byStatus.set(task.status, (byStatus.get(task.status) ?? 0) + 1);
      const kind = kindOf(task.name);
      const k = byKind.get(kind) ?? new Map<string, number>();
      k.set(task.status, (k.get(task.status) ?? 0) + 1);
      byKind.set(kind, k);
      lostAttempts += task.history.filter((h) => / lost: worker /.test(h.details)).length;
      if (kind === "doomed" && task.status !== "failed") violations.push(`task ${task.id} (doomed) ended ${task.status}`);
      // Anything else may only fail by losing all its attempts to killed workers.
      if (kind !== "doomed" && task.status === "failed" && !/^worker lost/.test(task.last_error ?? "")) {
        violations.push(`task ${task.id} (${kind}) failed: ${task.last_error}`);
      }
    }
    // A kill that caught no attempt tested nothing: each kill -9 hits a busy worker, so at least one
    // attempt must have been rescued.
    if (killed > 0 && lostAttempts === 0) violations.push(`${killed} kill -9 rescued no attempt: the kills missed the work`);
    // Every process has stopped; the reconciler's full pass (each minute in a deployment) clears
    // what lost completions left. After it, no job may be left.
    const { before, after: jobs } = await checkJobsLeft(db.kysely, logger, violations);

    // Every process has exited, so every backend has flushed its statistics (issue 25: HOT updates).
    await db.pool.query("select pg_stat_force_next_flush()");
    const { rows: updates } = await db.pool.query("select n_tup_upd, n_tup_hot_upd from pg_stat_user_tables where relname = 'tasks'");
    const upd = Number(updates[0].n_tup_upd);
    const hot = Number(updates[0].n_tup_hot_upd);
    // Transitions change status, which is indexed: never HOT. One history row each, creation aside.
    const moves = tasks.reduce((n, t) => n + t.history.length - 1, 0);
    const pct = (part: number, whole: number) => (whole <= 0 ? "n/a" : `${((100 * part) / whole).toFixed(1)} %`);

    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const lines = [
      "",
      `chaos report (seed ${seed}): ${tasks.length} tasks, ${workerCount} worker processes x ${options.concurrency}, ${killed} kill -9, ${restarted ? 1 : 0} PostgreSQL restart, ${seconds}s`,
      `  by status: ${[...byStatus].map(([s, n]) => `${s} ${n}`).join(", ")}`,
      ...[...byKind].map(([kind, m]) => `  ${kind.padEnd(7)} ${[...m].map(([s, n]) => `${s} ${n}`).join(", ")}`),
      `  attempts rescued from killed workers: ${lostAttempts}`,
      `  history checked: ${tasks.length} tasks, ${violations.length} violations`,
      `  updates of tasks (pg_stat_user_tables): ${upd}, HOT ${hot} (${pct(hot, upd)}); not transitions (heartbeats): ${upd - moves}, HOT ${pct(hot, upd - moves)}`,
      `  task jobs left: ${before.jobs} (${before.locked} locked) before the reconciler's full pass, ${jobs.jobs} (${jobs.locked} locked) after`,
      ...verdictLines(violations),
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
    return violations.length === 0 ? 0 : 1;
  } finally {
    await db.close();
  }
}

exitWith("chaos", main);
