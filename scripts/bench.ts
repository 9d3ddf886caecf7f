/**
 * Throughput benchmark: our whole pipeline (create through the API, claim, run, record) against a
 * baseline of bare graphile-worker (bulk add_jobs, a handler that does nothing) on the same embedded
 * PostgreSQL, in this same process; then rescue latency (kill -9 of a worker process running a task
 * → the task's next attempt started elsewhere) over real worker processes. Prints figures and
 * ratios; asserts nothing.
 * Usage: npm run bench -- --tasks 5000 --concurrency 10 --rescue-trials 5
 * With --scale N, measures reads on an empty database and with N finished tasks instead (bench-scale.ts).
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Command } from "commander";
import { run } from "graphile-worker";
import { startApiServer } from "../src/api/server.js";
import { loadConfig } from "../src/config.js";
import { startEmbeddedPostgres } from "../src/embedded-postgres.js";
import { TaskService } from "../src/gen/task/v1/task_pb.js";
import { createLogger } from "../src/logger.js";
import { builtinPlugins } from "../src/plugins/builtin.js";
import { graphileLogger } from "../src/queue/graphile-logger.js";
import { startWorkers } from "../src/queue/runner.js";
import { openDb, type Db } from "../src/store/db.js";
import { migrate } from "../src/store/migrate.js";
import { benchCapture, benchShellCapture } from "./bench-capture.js";
import { benchScale } from "./bench-scale.js";
import { measureRescueLatency, type KillableWorker, type RescueLatency } from "./faults/rescue-latency.js";

const cli = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../bin/task-cli.js");

const opts = new Command("bench")
  .option("--tasks <n>", "tasks (and baseline jobs) per run", "5000")
  .option("--concurrency <n>", "worker slots", "10")
  .option("--batch <n>", "tasks per CreateTasks call", "500")
  .option("--scale <n>", "instead: time reads on an empty database and with N finished tasks")
  .option("--rescue-trials <n>", "kill -9 trials for the rescue latency (0 skips it)", "5")
  .option("--capture-shell-mb <n>", "MiB of `yes` output captured through the shell plugin", "500")
  .option("--capture-lines <n>", "output lines captured for one task (ten tasks write a twentieth each)", "1000000")
  .parse()
  .opts<{ tasks: string; concurrency: string; batch: string; scale?: string; rescueTrials: string; captureLines: string; captureShellMb: string }>();
const N = Number(opts.tasks);
const concurrency = Number(opts.concurrency);
const batch = Number(opts.batch);
const logger = createLogger("silent");

async function count(db: Db, text: string): Promise<number> {
  return Number((await db.pool.query(text)).rows[0].n);
}

async function waitUntil(probe: () => Promise<boolean>): Promise<void> {
  while (!(await probe())) await sleep(20);
}

/**
 * Bare graphile-worker: N jobs added in one statement, a handler that returns at once; with its
 * local queue off (its default) or the size our workers use.
 */
async function baseline(db: Db, url: string, localQueueSize: number): Promise<{ enqueuePerSec: number; runPerSec: number }> {
  const t0 = performance.now();
  for (let i = 0; i < N; i += batch) {
    const n = Math.min(batch, N - i);
    await db.pool.query(
      `select count(*) from graphile_worker.add_jobs(array(select row('bench_noop', json_build_object('i', g), null, null, 10, null, 0, null)::graphile_worker.job_spec from generate_series(1, $1) g))`,
      [n],
    );
  }
  const enqueued = performance.now();
  let done = 0;
  const runner = await run({
    connectionString: url,
    concurrency,
    noHandleSignals: true,
    pollInterval: 2000,
    // Quiet, like ours: graphile-worker's default logger prints a line per job, and without cron
    // items given it looks for a ./crontab file and warns that there is none.
    logger: graphileLogger(logger),
    parsedCronItems: [],
    preset: { worker: { localQueue: { size: localQueueSize } } },
    taskList: { bench_noop: async () => void done++ },
  });
  const start = performance.now();
  await waitUntil(async () => done >= N);
  const end = performance.now();
  await runner.stop();
  return { enqueuePerSec: N / ((enqueued - t0) / 1000), runPerSec: N / ((end - start) / 1000) };
}

/** Ours: CreateTasks over HTTP, then workers claim, run noop, record; timed to the last SUCCEEDED. */
async function ours(db: Db, url: string): Promise<{ createPerSec: number; runPerSec: number; endToEndPerSec: number }> {
  const config = loadConfig({ port: 0, workerConcurrency: concurrency, heartbeatIntervalMs: 3000, reconcileIntervalMs: 0 }, {});
  const plugins = builtinPlugins(config, logger);
  const server = await startApiServer({ db, registry: plugins.registry, config, logger });
  const client = createClient(TaskService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
  const t0 = performance.now();
  for (let i = 0; i < N; i += batch) {
    const n = Math.min(batch, N - i);
    await client.createTasks({ tasks: Array.from({ length: n }, (_, j) => ({ name: `bench-${i + j}`, type: "noop" })) });
  }
  const created = performance.now();
  const workers = await startWorkers({ databaseUrl: url, registry: plugins.registry, config, logger });
  const start = performance.now();
  await waitUntil(async () => (await count(db, "select count(*) as n from tasks where status = 'succeeded'")) >= N);
  const end = performance.now();
  await workers.stop();
  await server.close();
  await plugins.close();
  return { createPerSec: N / ((created - t0) / 1000), runPerSec: N / ((end - start) / 1000), endToEndPerSec: N / ((end - t0) / 1000) };
}

/** A `task-cli serve` process with the default lease and heartbeat, once it is registered. */
async function serveProcess(db: Db, url: string): Promise<KillableWorker> {
  const child = spawn(process.execPath, [cli, "serve", "-n", "2"], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: url, LOG_LEVEL: "error" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  await waitUntil(async () => (await db.pool.query("select 1 from workers where id like $1 and lock_key is not null", [`%-${child.pid}-%`])).rowCount === 1);
  return { child, exited };
}

/** Rescue latency with the default settings (15 s lease, 3 s heartbeat, 1 s reconcile check). */
async function rescue(db: Db, url: string, trials: number): Promise<RescueLatency> {
  const config = loadConfig({ port: 0 }, {});
  const plugins = builtinPlugins(config, logger);
  const server = await startApiServer({ db, registry: plugins.registry, config, logger });
  const workers = [await serveProcess(db, url), await serveProcess(db, url)];
  try {
    const client = createClient(TaskService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    return await measureRescueLatency({
      pool: db.pool,
      client,
      trials,
      workers,
      startWorker: async () => {
        const w = await serveProcess(db, url);
        workers.push(w);
        return w;
      },
    });
  } finally {
    for (const w of workers) w.child.kill("SIGKILL");
    await Promise.all(workers.map((w) => w.exited));
    await server.close();
    await plugins.close();
  }
}

async function main() {
  if (opts.scale !== undefined) return benchScale(Number(opts.scale));
  const dir = await mkdtemp(path.join(os.tmpdir(), "task-bench-"));
  const cluster = await startEmbeddedPostgres(dir, logger);
  const db = openDb({ connectionString: cluster.url, max: 10 }, logger);
  try {
    await migrate(db, logger);
    const base = await baseline(db, cluster.url, -1);
    const batched = await baseline(db, cluster.url, concurrency);
    const mine = await ours(db, cluster.url);
    const captureLines = Number(opts.captureLines);
    const cap = await benchCapture(db, logger, captureLines, Math.max(100, Math.round(captureLines / 20)));
    const yes = await benchShellCapture(db, logger, Number(opts.captureShellMb));
    const trials = Number(opts.rescueTrials);
    const rescued = trials > 0 ? await rescue(db, cluster.url, trials) : undefined;
    const f = (n: number) => n.toFixed(0).padStart(7);
    const r = (a: number, b: number) => (a / b).toFixed(2);
    process.stdout.write(
      [
        `bench: ${N} tasks, concurrency ${concurrency}, batches of ${batch}, node ${process.version}, ${os.cpus().length} cores`,
        `  enqueue  baseline add_jobs ${f(base.enqueuePerSec)}/s   ours CreateTasks over HTTP ${f(mine.createPerSec)}/s   ratio ${r(mine.createPerSec, base.enqueuePerSec)}`,
        `  execute  baseline no-op job ${f(base.runPerSec)}/s   ours noop task (claim+run+record) ${f(mine.runPerSec)}/s   ratio ${r(mine.runPerSec, base.runPerSec)}`,
        `  execute  baseline with local queue ${concurrency} ${f(batched.runPerSec)}/s   ours (local queue ${concurrency} by default)   ratio ${r(mine.runPerSec, batched.runPerSec)}`,
        `  ours end to end (create → last SUCCEEDED) ${f(mine.endToEndPerSec)}/s`,
        `  capture  one task, ${cap.oneLines} lines: chunks ${f(cap.chunkedOne)} lines/s   a row per line ${f(cap.rowsOne)} lines/s   ratio ${r(cap.chunkedOne, cap.rowsOne)}`,
        `  capture  10 tasks at once, ${cap.tenLines} lines each: chunks ${f(cap.chunkedTen)} lines/s   a row per line ${f(cap.rowsTen)} lines/s   ratio ${r(cap.chunkedTen, cap.rowsTen)}`,
        `  capture  shell \`yes | head -c ${yes.mb}M\`: ${yes.lines} lines in ${yes.seconds.toFixed(1)} s (${f(yes.lines / yes.seconds)} lines/s), RSS ${yes.rssBeforeMb.toFixed(0)} MB before, peak ${yes.rssPeakMb.toFixed(0)} MB`,
        `  logs     on ${cap.storedLines} stored lines (median of 21): tail 100 ${cap.tailMs.toFixed(1)} ms   range of 100 ${cap.rangeMs.toFixed(1)} ms   counts ${cap.countMs.toFixed(1)} ms   (row per line: tail 100 ${cap.rowsTailMs.toFixed(1)} ms)`,
        ...(rescued ? [`  rescue after kill -9 (next attempt started), ${rescued.trials.length} trial${rescued.trials.length === 1 ? "" : "s"}: ${rescued.summary}`] : []),
        "",
      ].join("\n"),
    );
  } finally {
    await db.close();
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
