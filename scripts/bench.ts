/**
 * The hot-path benchmark, in one process tree on one embedded PostgreSQL: the baselines (bare
 * graphile-worker, default and batched; a bare Connect handler doing one INSERT) run side by side
 * with ours (a real `task-cli server` and `task-cli serve -n N`), so the ratios hold however fast
 * the machine is today. Prints a table (figure, ours, baseline, ratio, target) and writes the same
 * figures as JSON. Asserts nothing.
 * Usage: npm run bench -- --n 5000 --concurrency 10 --json bench-results.json
 * With --scale N, measures reads on an empty database and with N finished tasks instead (bench-scale.ts).
 */
import { execFile } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Command } from "commander";
import { startEmbeddedPostgres } from "../src/embedded-postgres.js";
import { TaskService } from "../src/gen/task/v1/task_pb.js";
import { createLogger } from "../src/logger.js";
import { openDb, type Db } from "../src/store/db.js";
import { migrate } from "../src/store/migrate.js";
import { benchCapture, benchShellCapture } from "./bench-capture.js";
import { benchScale } from "./bench-scale.js";
import { graphileBaseline } from "./bench/graphile-baseline.js";
import { cliGetSeconds, createBulk, createSingles, drainRate, endToEnd, idleLatency, lastTaskId, steadyLatency, untilDrained } from "./bench/ours.js";
import { startBareInsertServer, startServeProcess, startServerProcess, type BenchProcess } from "./bench/processes.js";
import { formatPercentiles } from "./bench/stats.js";
import { measureRescueLatency, type KillableWorker } from "./faults/rescue-latency.js";
import { benchWakeups } from "./bench/wakeups.js";
import { compiledBuildIsFresh } from "../bin/freshness.js";

const opts = new Command("bench")
  .option("--n <n>", "tasks (and baseline jobs) per drain and end-to-end run", "5000")
  .option("--tasks <n>", "the same as --n (older name)")
  .option("--concurrency <n>", "worker slots", "10")
  .option("--batch <n>", "tasks per CreateTasks call", "500")
  .option("--singles <n>", "single CreateTask calls per round (two rounds, each against the bare handler)", "2000")
  .option("--create-concurrency <n>", "single CreateTask calls in flight", "8")
  .option("--latency-samples <n>", "sequential creates for the idle latency", "200")
  .option("--steady-seconds <n>", "length of the steady half-load run", "5")
  .option("--rescue-trials <n>", "kill -9 trials for the rescue latency (0 skips it)", "3")
  .option("--wakeup-trials <n>", "trials for the queue wake-up latencies (bench/wakeups.ts)", "5")
  .option("--capture-shell-mb <n>", "MiB of `yes` output captured through the shell plugin", "500")
  .option("--capture-lines <n>", "output lines captured for one task (ten tasks write a twentieth each)", "1000000")
  .option("--json <file>", "where to write the figures as JSON", "bench-results.json")
  .option("--scale <n>", "instead: time reads on an empty database and with N finished tasks")
  .parse()
  .opts<{
    n: string;
    tasks?: string;
    concurrency: string;
    batch: string;
    singles: string;
    createConcurrency: string;
    latencySamples: string;
    steadySeconds: string;
    rescueTrials: string;
    wakeupTrials: string;
    captureLines: string;
    captureShellMb: string;
    json: string;
    scale?: string;
  }>();
const N = Number(opts.tasks ?? opts.n);
const concurrency = Number(opts.concurrency);
const batch = Number(opts.batch);
const singles = Number(opts.singles);
const createConcurrency = Number(opts.createConcurrency);
const logger = createLogger("silent");

function clientFor(url: string) {
  return createClient(TaskService, createConnectTransport({ baseUrl: url, httpVersion: "1.1" }));
}

/** Whether a worker process (by pid) holds its liveness lock, i.e. is registered and ready. */
const registered = (db: Db) => async (pid: number) =>
  (await db.pool.query("select 1 from workers where id like $1 and lock_key is not null", [`%-${pid}-%`])).rowCount === 1;

/** Rescue latency with the default settings (15 s lease, 3 s heartbeat, 1 s reconcile check). */
async function rescue(db: Db, url: string, dataDir: string, serverUrl: string, trials: number) {
  const start = async (): Promise<KillableWorker> => startServeProcess(url, dataDir, 2, registered(db));
  const workers: BenchProcess[] = [(await start()) as BenchProcess, (await start()) as BenchProcess];
  try {
    return await measureRescueLatency({
      pool: db.pool,
      client: clientFor(serverUrl),
      trials,
      workers,
      startWorker: async () => {
        const w = (await start()) as BenchProcess;
        workers.push(w);
        return w;
      },
    });
  } finally {
    for (const w of workers) w.child.kill("SIGKILL");
    await Promise.all(workers.map((w) => w.exited));
  }
}

async function main() {
  if (opts.scale !== undefined) return benchScale(Number(opts.scale));
  // The processes are measured as operators run them: the compiled build, so build it if stale.
  if (!compiledBuildIsFresh()) await promisify(execFile)("npm", ["run", "--silent", "build"], { env: process.env });
  const dir = await mkdtemp(path.join(os.tmpdir(), "task-bench-"));
  await chmod(dir, 0o755); // run as root, the embedded PostgreSQL runs as "postgres" and must get in
  const cluster = await startEmbeddedPostgres(path.join(dir, "pg"), logger);
  const db = openDb({ connectionString: cluster.url, max: 10 }, logger);
  const started: BenchProcess[] = [];
  try {
    await migrate(db, logger);
    const latencySamples = Number(opts.latencySamples);
    const gwDefault = await graphileBaseline(db, cluster.url, { n: N, concurrency, batched: false, latencySamples, logger });
    const gwBatched = await graphileBaseline(db, cluster.url, { n: N, concurrency, batched: true, latencySamples, logger });

    const server = await startServerProcess(cluster.url, path.join(dir, "server"));
    started.push(server);
    const bare = await startBareInsertServer(cluster.url, 10);
    started.push(bare);
    const client = clientFor(server.url);
    const bareClient = clientFor(bare.url);
    // Warm both up, then alternate rounds so that a noisy neighbour hurts both alike; best round each.
    await createSingles(bareClient, Math.min(200, singles), createConcurrency, "warm");
    await createSingles(client, Math.min(200, singles), createConcurrency, "warm");
    const bareRates: number[] = [];
    const singleRates: number[] = [];
    for (let round = 0; round < 2; round++) {
      bareRates.push(await createSingles(bareClient, singles, createConcurrency, "bare"));
      singleRates.push(await createSingles(client, singles, createConcurrency, `single-${round}`));
    }
    await bare.stop();
    const bulkPerSec = await createBulk(client, N, batch, "bulk");

    // Drain: everything created so far (no worker has run yet), by one serve process.
    const queued = Number((await db.pool.query("select count(*) as n from tasks where status = 'queued'")).rows[0].n);
    const serve = await startServeProcess(cluster.url, path.join(dir, "serve"), concurrency, registered(db));
    started.push(serve);
    await untilDrained(db);
    const drainPerSec = await drainRate(db, "0");

    const endToEndPerSec = await endToEnd(db, client, N, batch);
    const idle = await idleLatency(db, client, latencySamples);
    const steadyRate = Math.max(1, Math.round(endToEndPerSec / 2));
    const steady = await steadyLatency(db, client, steadyRate, Number(opts.steadySeconds));
    const serveRssMb = await serve.peakRssMb();
    const serverRssMb = await server.peakRssMb();
    await serve.stop();

    const anyId = await lastTaskId(db);
    const cliSeconds = await cliGetSeconds(server.url, anyId, 7);
    const trials = Number(opts.rescueTrials);
    const rescued = trials > 0 ? await rescue(db, cluster.url, path.join(dir, "rescue"), server.url, trials) : undefined;
    const wakeups = await benchWakeups(db, cluster.url, server.url, path.join(dir, "wakeups"), Number(opts.wakeupTrials));

    const captureLines = Number(opts.captureLines);
    const cap = await benchCapture(db, logger, captureLines, Math.max(100, Math.round(captureLines / 20)));
    const yes = await benchShellCapture(db, logger, Number(opts.captureShellMb));
    const single = Math.max(...singleRates);
    const bareBest = Math.max(...bareRates);
    const figures = {
      n: N,
      concurrency,
      node: process.version,
      cores: os.cpus().length,
      cliBuild: compiledBuildIsFresh() ? "dist" : "tsx",
      graphileDefault: gwDefault,
      graphileBatched: gwBatched,
      drain: { tasks: queued, perSec: drainPerSec, ratioToBatched: drainPerSec / gwBatched.drainPerSec, ratioToDefault: drainPerSec / gwDefault.drainPerSec },
      endToEndPerSec,
      createTasksBulkPerSec: bulkPerSec,
      createTaskSingle: { concurrency: createConcurrency, perSec: single, rounds: singleRates, bareInsertPerSec: bareBest, bareRounds: bareRates, ratio: single / bareBest },
      idleStartMs: idle,
      steadyStartMs: { perSec: steadyRate, ...steady },
      peakRssMb: { serve: serveRssMb, server: serverRssMb },
      cliTaskGetSeconds: cliSeconds,
      rescue: rescued,
      wakeups: wakeups.figures,
      capture: { ...cap, shell: yes },
    };
    await writeFile(opts.json, `${JSON.stringify(figures, null, 2)}\n`);

    const f = (v: number) => v.toFixed(0);
    const targets: Array<[string, boolean]> = [
      ["drain ratio", figures.drain.ratioToBatched >= 0.35],
      ["end to end", endToEndPerSec >= 5000],
      ["CreateTask single ratio", figures.createTaskSingle.ratio >= 1],
      ["idle latency", idle.p50 <= 4 && idle.p99 <= 10],
      ["half-load p99", steady.p99 <= 50],
      ["peak RSS", serveRssMb <= 120],
      ["task get", cliSeconds.cli <= 0.35],
      ["rescue", !rescued || Math.max(...rescued.trials) <= 2_000],
      ...wakeups.targets,
    ];
    const unmet = targets.filter(([, ok]) => !ok).map(([name]) => name);
    const met = (ok: boolean) => (ok ? "met" : "NOT met");
    const row = (figure: string, ours: string, baseline: string, ratio: string, target: string) =>
      `  ${figure.padEnd(44)} ${ours.padStart(14)} ${baseline.padStart(24)} ${ratio.padStart(6)}  ${target}`;
    process.stdout.write(
      [
        `bench: ${N} tasks, concurrency ${concurrency}, node ${process.version}, ${figures.cores} cores, task-cli runs ${figures.cliBuild}`,
        row("figure", "ours", "baseline", "ratio", "target"),
        row(`drain ${queued} pre-created (serve -n ${concurrency})`, `${f(drainPerSec)}/s`, `gw batched ${f(gwBatched.drainPerSec)}/s`, figures.drain.ratioToBatched.toFixed(2), `≥ 0.35 ${met(figures.drain.ratioToBatched >= 0.35)}`),
        row("drain vs graphile-worker defaults", `${f(drainPerSec)}/s`, `gw default ${f(gwDefault.drainPerSec)}/s`, figures.drain.ratioToDefault.toFixed(2), ""),
        row("end to end: CreateTasks + drain", `${f(endToEndPerSec)}/s`, "", "", `≥ 5000/s ${met(endToEndPerSec >= 5000)}`),
        row(`CreateTask single, concurrency ${createConcurrency}`, `${f(single)}/s`, `bare INSERT ${f(bareBest)}/s`, figures.createTaskSingle.ratio.toFixed(2), `≥ 1.0 ${met(figures.createTaskSingle.ratio >= 1)}`),
        row(`CreateTasks bulk (${batch} per call)`, `${f(bulkPerSec)}/s`, "", "", ""),
        `  create → RUNNING idle           ${formatPercentiles(idle)}   target p50 ≤ 4, p99 ≤ 10 ms ${met(idle.p50 <= 4 && idle.p99 <= 10)}`,
        `  create → RUNNING at ${steadyRate}/s    ${formatPercentiles(steady)}   target p99 ≤ 50 ms ${met(steady.p99 <= 50)}`,
        `  graphile-worker add → start     default ${formatPercentiles(gwDefault.addToStartMs)}`,
        `  graphile-worker add → start     batched ${formatPercentiles(gwBatched.addToStartMs)}`,
        `  peak RSS                        serve -n ${concurrency} ${serveRssMb.toFixed(0)} MB (target ≤ 120 MB ${met(serveRssMb <= 120)}), server ${serverRssMb.toFixed(0)} MB`,
        `  task-cli task get               ${cliSeconds.cli.toFixed(2)} s wall, median of 7 (node -e 0: ${cliSeconds.bareNode.toFixed(2)} s) (target ≤ 0.35 s ${met(cliSeconds.cli <= 0.35)})`,
        `  capture  one task, ${cap.oneLines} lines: chunks ${f(cap.chunkedOne)} lines/s   a row per line ${f(cap.rowsOne)} lines/s   ratio ${(cap.chunkedOne / cap.rowsOne).toFixed(2)}`,
        `  capture  10 tasks at once, ${cap.tenLines} lines each: chunks ${f(cap.chunkedTen)} lines/s   a row per line ${f(cap.rowsTen)} lines/s   ratio ${(cap.chunkedTen / cap.rowsTen).toFixed(2)}`,
        `  capture  shell \`yes | head -c ${yes.mb}M\`: ${yes.lines} lines in ${yes.seconds.toFixed(1)} s (${f(yes.lines / yes.seconds)} lines/s), RSS ${yes.rssBeforeMb.toFixed(0)} MB before, peak ${yes.rssPeakMb.toFixed(0)} MB`,
        `  logs     on ${cap.storedLines} stored lines (median of 21): tail 100 ${cap.tailMs.toFixed(1)} ms   range of 100 ${cap.rangeMs.toFixed(1)} ms   counts ${cap.countMs.toFixed(1)} ms   (row per line: tail 100 ${cap.rowsTailMs.toFixed(1)} ms)`,
        ...(rescued ? [`  rescue after kill -9 (next attempt started), ${rescued.trials.length} trial${rescued.trials.length === 1 ? "" : "s"}: ${rescued.summary} (target each ≤ 2000 ms ${met(Math.max(...rescued.trials) <= 2_000)})`] : []),
        ...wakeups.lines,
        ...(unmet.length > 0
          ? [`  not met: ${unmet.join(", ")}; the profile that bounds each and the change that would move it: docs/design/hot-path.md, "What still bounds it"`]
          : []),
        `  figures written to ${opts.json}`,
        "",
      ].join("\n"),
    );
  } finally {
    for (const p of started.reverse()) await p.stop();
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
