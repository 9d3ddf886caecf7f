/**
 * The hot-path benchmark, in one process tree on one embedded PostgreSQL: the baselines (bare
 * graphile-worker with its defaults and with its performance guide's batching; a bare Connect handler
 * doing one INSERT; a bare `pg` pool running `select 1`) run side by side with ours (a real
 * `task-cli server` and `task-cli serve -n N`), so the ratios hold however fast the machine is
 * today. Also what tracing costs a drain, against the previous release (bench/tracing-cost.ts), and
 * what the audit row costs a single create (bench/audit-cost.ts). Prints a table (figure, ours, baseline, ratio, target with met / NOT met) and writes the
 * same figures as JSON. Asserts nothing.
 * Usage: npm run bench -- --n 5000 --concurrency 10 --json bench-results.json
 * With --scale N, measures reads on an empty database and with N finished tasks instead (bench-scale.ts).
 * With --keys-only, runs only the flow-control drains: with keys and under a rate limit never hit against
 * the drain without either, and a rate limit that is hit (bench/keys.ts); with --flow-creates-only, what
 * a key, an expiry and unique_while cost a single create (bench/flow-creates.ts).
 * With --agents-only, runs only the remote agents' rows against database workers (bench/agents.ts).
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
import { bareSelectOne, queryDrain, queryTargetEnv } from "./bench/plugins.js";
import { progressDrain } from "./bench/progress.js";
import { cliGetSeconds, createBulk, createSingles, drainRate, endToEnd, idleLatency, lastTaskId, steadyLatency, untilDrained } from "./bench/ours.js";
import { startBareInsertServer, startServeProcess, startServerProcess, type BenchProcess } from "./bench/processes.js";
import { formatPercentiles } from "./bench/stats.js";
import { measureRescueLatency, type KillableWorker } from "./faults/rescue-latency.js";
import { benchWakeups } from "./bench/wakeups.js";
import { benchTracingCost } from "./bench/tracing-cost.js";
import { benchAuditCost } from "./bench/audit-cost.js";
import { flowDrainLines, flowDrains } from "./bench/keys.js";
import { flowCreateLines, flowCreates } from "./bench/flow-creates.js";
import { benchAgents, type AgentBenchFigures } from "./bench/agents.js";
import { compiledBuildIsFresh } from "../bin/freshness.js";

const opts = new Command("bench")
  .option("--n <n>", "tasks (and baseline jobs) per drain and end-to-end run", "5000")
  .option("--tasks <n>", "the same as --n (older name)")
  .option("--concurrency <n>", "worker slots", "10")
  .option("--batch <n>", "tasks per CreateTasks call", "500")
  .option("--singles <n>", "single CreateTask calls per round (two rounds, each against the bare handler)", "2000")
  .option("--create-concurrency <n>", "single CreateTask calls in flight", "8")
  .option("--latency-samples <n>", "sequential creates for the idle latency", "200")
  .option("--progress-tasks <n>", "no-op tasks per drain of the progress row (10 reports each, against none)", "2000")
  .option("--query-tasks <n>", "run_query tasks of `select 1` (and bare pool statements) for the real-plugin row", "2000")
  .option("--steady-seconds <n>", "length of the steady half-load run", "5")
  .option("--trace-rounds <n>", "rounds of the tracing drains (previous release, tracing off, on; --n tasks each; 0 skips them)", "2")
  .option("--audit-rounds <n>", "rounds of single creates with and without the audit row (--singles each)", "2")
  .option("--rescue-trials <n>", "kill -9 trials for the rescue latency (0 skips it)", "3")
  .option("--wakeup-trials <n>", "trials for the queue wake-up latencies (bench/wakeups.ts)", "5")
  .option("--capture-shell-mb <n>", "MiB of `yes` output captured through the shell plugin", "500")
  .option("--capture-lines <n>", "output lines captured for one task (ten tasks write a twentieth each)", "1000000")
  .option("--json <file>", "where to write the figures as JSON", "bench-results.json")
  .option("--scale <n>", "instead: time reads on an empty database and with N finished tasks")
  .option("--keys <n>", "keys the keyed drain's tasks are spread over", "20")
  .option("--key-rounds <n>", "rounds of the flow-control drains (none, keyed, under a limit never hit; --n tasks each)", "5")
  .option("--keys-only", "instead: only the flow-control drains (bench/keys.ts)")
  .option("--flow-creates-only", "instead: only what a key, an expiry and unique_while cost a create (bench/flow-creates.ts)")
  .option("--agent-tasks <n>", "no-ops per drain of the agents' rows (2 agents against 2 serve processes, --concurrency slots in all)", "2000")
  .option("--agent-rounds <n>", "alternating drain rounds of the agents' rows", "2")
  .option("--agents-only", "instead: only the remote agents' rows (bench/agents.ts)")
  .parse()
  .opts<{
    n: string;
    tasks?: string;
    concurrency: string;
    batch: string;
    singles: string;
    createConcurrency: string;
    latencySamples: string;
    queryTasks: string;
    progressTasks: string;
    steadySeconds: string;
    traceRounds: string;
    auditRounds: string;
    rescueTrials: string;
    wakeupTrials: string;
    captureLines: string;
    captureShellMb: string;
    json: string;
    scale?: string;
    keys: string;
    keyRounds: string;
    keysOnly?: boolean;
    flowCreatesOnly?: boolean;
    agentTasks: string;
    agentRounds: string;
    agentsOnly?: boolean;
  }>();
const N = Number(opts.tasks ?? opts.n);
const concurrency = Number(opts.concurrency);
const batch = Number(opts.batch);
const singles = Number(opts.singles);
const createConcurrency = Number(opts.createConcurrency);
const logger = createLogger("silent");

/** One line of the printed table: figure, ours, baseline, ratio, target. */
const row = (figure: string, ours: string, baseline: string, ratio: string, goal: string) =>
  `  ${figure.padEnd(44)} ${ours.padStart(14)} ${baseline.padStart(24)} ${ratio.padStart(6)}  ${goal}`.trimEnd();

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

    // The server validates run_query's target, so it knows the bench's one.
    const server = await startServerProcess(cluster.url, path.join(dir, "server"), queryTargetEnv(cluster.url));
    started.push(server);
    const bare = await startBareInsertServer(cluster.url, 10);
    started.push(bare);
    const client = clientFor(server.url);
    const bareClient = clientFor(bare.url);
    const flowFigures = () =>
      flowDrains(db, client, { databaseUrl: cluster.url, dataDir: path.join(dir, "serve-keys"), concurrency, tasks: N, batch, keys: Number(opts.keys), rounds: Number(opts.keyRounds), registered: registered(db) });
    const flowCreateFigures = () =>
      flowCreates(db, client, { databaseUrl: cluster.url, dataDir: path.join(dir, "serve-creates"), creates: singles, concurrency: createConcurrency, rounds: Number(opts.keyRounds), registered: registered(db) });
    if (opts.flowCreatesOnly) {
      const lines = flowCreateLines(await flowCreateFigures(), row);
      process.stdout.write([`flow control at create: ${singles} single creates a kind a round`, row("figure", "ours", "baseline", "ratio", "target"), ...lines, ""].join("\n"));
      return;
    }
    const agentFigures = () =>
      benchAgents(db, client, {
        databaseUrl: cluster.url,
        serverUrl: server.url,
        dataDir: path.join(dir, "serve-agents"),
        concurrency,
        tasks: Number(opts.agentTasks),
        batch,
        rounds: Number(opts.agentRounds),
        latencySamples: Math.min(100, latencySamples),
        registered: registered(db),
      });
    if (opts.agentsOnly) {
      const a = await agentFigures();
      process.stdout.write(`${agentRows(a).join("\n")}\n`);
      return;
    }
    if (opts.keysOnly) {
      const lines = flowDrainLines(await flowFigures(), row, (ok) => (ok ? "met" : "NOT met"));
      process.stdout.write([`flow control: ${N} no-ops a drain, serve -n ${concurrency}`, row("figure", "ours", "baseline", "ratio", "target"), ...lines, ""].join("\n"));
      return;
    }
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

    // The baselines just before our drain, so that the machine's load changes as little as it can
    // between them (it moves severalfold over a few minutes on a shared machine). Their jobs have
    // their own task identifiers: our tasks' jobs, waiting meanwhile, are not theirs to take.
    const gwDefault = await graphileBaseline(db, cluster.url, { n: N, concurrency, batched: false, latencySamples, logger });
    const gwBatched = await graphileBaseline(db, cluster.url, { n: N, concurrency, batched: true, latencySamples, logger });

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

    const flow = await flowFigures();
    const flowCreated = await flowCreateFigures();
    const agents = await agentFigures();

    // A real plugin: run_query tasks against a bare pool, one after the other.
    const queryTasks = Number(opts.queryTasks);
    const query = await queryDrain(db, client, { databaseUrl: cluster.url, dataDir: path.join(dir, "serve-query"), concurrency, total: queryTasks, batch, registered: registered(db) });
    const bareQueryPerSec = await bareSelectOne(cluster.url, queryTasks, concurrency);
    // What reporting progress costs: no-ops reporting 10 times against plain no-ops.
    const progress = await progressDrain(db, client, { databaseUrl: cluster.url, dataDir: path.join(dir, "serve-progress"), concurrency, total: Number(opts.progressTasks), batch, registered: registered(db) });

    // Tracing's cost on the drain, against the previous release; the audit row's on single creates.
    const traceRounds = Number(opts.traceRounds);
    const tracing = traceRounds > 0 ? await benchTracingCost({ clusterUrl: cluster.url, dir, n: N, concurrency, batch, rounds: traceRounds, logger }) : { skipped: "--trace-rounds 0" };
    const audit = await benchAuditCost({ clusterUrl: cluster.url, total: singles, concurrency: createConcurrency, rounds: Number(opts.auditRounds), logger });

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
    const serveRssPeakMb = Math.max(serveRssMb, query.serveRssMb);
    // graphile-worker's better add → start of its two modes, percentile by percentile.
    const gwStart = { p50: Math.min(gwDefault.addToStartMs.p50, gwBatched.addToStartMs.p50), p99: Math.min(gwDefault.addToStartMs.p99, gwBatched.addToStartMs.p99) };
    // The targets: each a same-run ratio (memory: a bound in MB), its bound, and whether it holds.
    const target = (value: number, bound: number, atMost = false) => ({ value, bound, met: atMost ? value <= bound : value >= bound });
    const targets = {
      drain: target(drainPerSec / gwBatched.drainPerSec, 0.4),
      endToEnd: target(endToEndPerSec / gwBatched.drainPerSec, 0.3),
      createTaskSingle: target(single / bareBest, 1),
      idleP50: target(idle.p50 / gwStart.p50, 1, true),
      idleP99: target(idle.p99 / gwStart.p99, 1, true),
      serveRss: target(serveRssPeakMb, 100, true),
      taskGet: target(cliSeconds.cli / cliSeconds.bareNode, 2, true),
      runQuery: target(query.perSec / bareQueryPerSec, 0.5),
      keyedDrain: target(flow.keyed.median, 0.8),
      rateLimitUse: { ...target(flow.hit.ratio, 0.95), met: flow.hit.ratio >= 0.95 && flow.hit.ratio <= 1 },
      fairness: target(flow.fairness.seconds, 2, true),
      agentDrain: target(agents.ratio, 0.5),
      agentIdleP50: target(agents.idleP50Ratio, 2, true),
      // Timings the tests used to assert (test/faults/worker-faults, queues-workers, schedule-processes).
      ...(rescued ? { rescue: target(Math.max(...rescued.trials), 2_000, true) } : {}),
      ...Object.fromEntries(wakeups.targets.map(([name, met]) => [name, { met }])),
    };
    const figures = {
      n: N,
      concurrency,
      node: process.version,
      cores: os.cpus().length,
      cliBuild: compiledBuildIsFresh() ? "dist" : "tsx",
      graphileDefault: gwDefault,
      graphileBatched: gwBatched,
      drain: { tasks: queued, perSec: drainPerSec, ratioToBatched: drainPerSec / gwBatched.drainPerSec, ratioToDefault: drainPerSec / gwDefault.drainPerSec },
      endToEnd: { perSec: endToEndPerSec, ratioToBatched: endToEndPerSec / gwBatched.drainPerSec, ratioToDefault: endToEndPerSec / gwDefault.drainPerSec },
      createTasksBulkPerSec: bulkPerSec,
      flowDrains: flow,
      flowCreates: flowCreated,
      agents,
      createTaskSingle: { concurrency: createConcurrency, perSec: single, rounds: singleRates, bareInsertPerSec: bareBest, bareRounds: bareRates, ratio: single / bareBest },
      idleStartMs: idle,
      steadyStartMs: { perSec: steadyRate, ...steady },
      // noopDrainRatio: the no-op drain against the same bare pool, the ceiling of `ratio` (a run_query attempt cannot cost less than a no-op).
      runQuery: { tasks: queryTasks, perSec: query.perSec, barePoolPerSec: bareQueryPerSec, ratio: query.perSec / bareQueryPerSec, noopDrainRatio: drainPerSec / bareQueryPerSec },
      tracing,
      auditCost: audit,
      progress,
      peakRssMb: { serve: serveRssMb, serveRunQuery: query.serveRssMb, server: serverRssMb },
      cliTaskGetSeconds: cliSeconds,
      rescue: rescued,
      wakeups: wakeups.figures,
      capture: { ...cap, shell: yes },
      targets,
    };
    await writeFile(opts.json, `${JSON.stringify(figures, null, 2)}\n`);

    const f = (v: number) => v.toFixed(0);
    const r = (v: number) => v.toFixed(2);
    const unmet = Object.entries(targets)
      .filter(([, t]) => !t.met)
      .map(([name]) => name);
    const met = (t: { met: boolean }) => (t.met ? "met" : "NOT met");
    const settings = (s: Record<string, unknown>) => JSON.stringify(s).replaceAll('"', "");
    process.stdout.write(
      [
        `bench: ${N} tasks, concurrency ${concurrency}, node ${process.version}, ${figures.cores} cores, task-cli runs ${figures.cliBuild}`,
        `  graphile-worker default: ${settings(gwDefault.settings)}; batched (its performance guide): ${settings(gwBatched.settings)}`,
        row("figure", "ours", "baseline", "ratio", "target"),
        row(`drain ${queued} pre-created (serve -n ${concurrency})`, `${f(drainPerSec)}/s`, `gw batched ${f(gwBatched.drainPerSec)}/s`, r(figures.drain.ratioToBatched), `≥ 0.4 ${met(targets.drain)}`),
        row("drain vs graphile-worker defaults", `${f(drainPerSec)}/s`, `gw default ${f(gwDefault.drainPerSec)}/s`, r(figures.drain.ratioToDefault), ""),
        ...flowDrainLines(flow, row, (ok) => met({ met: ok })),
        ...flowCreateLines(flowCreated, row),
        ...agentRows(agents),
        row("end to end: CreateTasks + drain", `${f(endToEndPerSec)}/s`, `gw batched ${f(gwBatched.drainPerSec)}/s`, r(figures.endToEnd.ratioToBatched), `≥ 0.3 ${met(targets.endToEnd)}`),
        row("end to end vs graphile-worker defaults", `${f(endToEndPerSec)}/s`, `gw default ${f(gwDefault.drainPerSec)}/s`, r(figures.endToEnd.ratioToDefault), ""),
        row(`CreateTask single, concurrency ${createConcurrency}`, `${f(single)}/s`, `bare INSERT ${f(bareBest)}/s`, r(figures.createTaskSingle.ratio), `≥ 1.0 ${met(targets.createTaskSingle)}`),
        row(`CreateTasks bulk (${batch} per call)`, `${f(bulkPerSec)}/s`, "", "", ""),
        row(`run_query \`select 1\`, ${queryTasks} (serve -n ${concurrency})`, `${f(query.perSec)}/s`, `bare pg pool ${f(bareQueryPerSec)}/s`, r(figures.runQuery.ratio), `≥ 0.5 ${met(targets.runQuery)}`),
        row("  its ceiling: the no-op drain vs the same pool", `${f(drainPerSec)}/s`, `bare pg pool ${f(bareQueryPerSec)}/s`, r(figures.runQuery.noopDrainRatio), ""),
        ...("skipped" in tracing
          ? [row(`drain ${N}, tracing off vs previous release`, `skipped: ${tracing.skipped}`, "", "", "")]
          : [
              row(`drain ${N}, tracing off (serve -n ${concurrency})`, `${f(tracing.best.off)}/s`, `prev release ${f(tracing.best.previous)}/s`, r(tracing.offToPrevious), `within noise (±${(tracing.noise * 100).toFixed(0)} %): ${tracing.withinNoise ? "yes" : "NO"}`),
              row(`drain ${N}, tracing on (OTLP to a receiver)`, `${f(tracing.best.on)}/s`, `tracing off ${f(tracing.best.off)}/s`, r(tracing.onToOff), `cost ${((1 - tracing.onToOff) * 100).toFixed(0)} % (${tracing.spans} spans)`),
              `    previous release: ${tracing.previousRelease.subject.split(" ")[0]} (the commit before src/tracing.ts); best of ${tracing.rounds} rounds, each: prev ${tracing.perSec.previous.map(f).join(", ")}, off ${tracing.perSec.off.map(f).join(", ")}, on ${tracing.perSec.on.map(f).join(", ")}/s`,
            ]),
        row(`CreateTask single at ${createConcurrency}, with its audit row`, `${f(audit.perSec.audited)}/s`, `no audit insert ${f(audit.perSec.noAuditInsert)}/s`, r(audit.auditRowRatio), `${audit.auditRowMsPerCreate >= 0 ? "+" : ""}${audit.auditRowMsPerCreate.toFixed(2)} ms a create`),
        row("  vs the create statement alone", `${f(audit.perSec.audited)}/s`, `statement alone ${f(audit.perSec.statementAlone)}/s`, r(audit.auditedToStatementAlone), "no transaction (before audit)"),
        `    best of ${audit.rounds} rounds of ${audit.creates}, each: audited ${audit.roundsPerSec.audited.map(f).join(", ")}, no audit insert ${audit.roundsPerSec.noAuditInsert.map(f).join(", ")}, statement alone ${audit.roundsPerSec.statementAlone.map(f).join(", ")}/s`,
        row(`no-ops reporting progress 10×, ${progress.tasks}`, `${f(progress.progressPerSec)}/s`, `plain no-ops ${f(progress.plainPerSec)}/s`, r(progress.ratio), `(no target; ${progress.writesPerTask.toFixed(1)} progress writes a task)`),
        `  create → RUNNING idle           ${formatPercentiles(idle)}`,
        `  graphile-worker add → start     default ${formatPercentiles(gwDefault.addToStartMs)}`,
        `  graphile-worker add → start     batched ${formatPercentiles(gwBatched.addToStartMs)}`,
        `  idle start vs graphile-worker's better   p50 ${idle.p50.toFixed(1)} vs ${gwStart.p50.toFixed(1)} ms (${met(targets.idleP50)})   p99 ${idle.p99.toFixed(1)} vs ${gwStart.p99.toFixed(1)} ms (${met(targets.idleP99)})   target: no worse`,
        `  create → RUNNING at ${steadyRate}/s    ${formatPercentiles(steady)}`,
        `  peak RSS                        serve -n ${concurrency} ${f(serveRssPeakMb)} MB (no-ops ${f(serveRssMb)}, run_query ${f(query.serveRssMb)}) (target ≤ 100 MB ${met(targets.serveRss)}), server ${f(serverRssMb)} MB`,
        `  task-cli task get               ${cliSeconds.cli.toFixed(2)} s wall, median of 7; node -e 0: ${cliSeconds.bareNode.toFixed(2)} s; ratio ${r(targets.taskGet.value)} (target ≤ 2.0 ${met(targets.taskGet)})`,
        `  capture  one task, ${cap.oneLines} lines: chunks ${f(cap.chunkedOne)} lines/s   a row per line ${f(cap.rowsOne)} lines/s   ratio ${(cap.chunkedOne / cap.rowsOne).toFixed(2)}`,
        `  capture  10 tasks at once, ${cap.tenLines} lines each: chunks ${f(cap.chunkedTen)} lines/s   a row per line ${f(cap.rowsTen)} lines/s   ratio ${(cap.chunkedTen / cap.rowsTen).toFixed(2)}`,
        `  capture  shell \`yes | head -c ${yes.mb}M\`: ${yes.lines} lines in ${yes.seconds.toFixed(1)} s (${f(yes.lines / yes.seconds)} lines/s), RSS ${yes.rssBeforeMb.toFixed(0)} MB before, peak ${yes.rssPeakMb.toFixed(0)} MB`,
        `  logs     on ${cap.storedLines} stored lines (median of 21): tail 100 ${cap.tailMs.toFixed(1)} ms   range of 100 ${cap.rangeMs.toFixed(1)} ms   counts ${cap.countMs.toFixed(1)} ms   (row per line: tail 100 ${cap.rowsTailMs.toFixed(1)} ms)`,
        ...(rescued ? [`  rescue after kill -9 (next attempt started), ${rescued.trials.length} trial${rescued.trials.length === 1 ? "" : "s"}: ${rescued.summary} (target each ≤ 2000 ms ${met({ met: Math.max(...rescued.trials) <= 2_000 })})`] : []),
        ...wakeups.lines,
        `  targets: ${Object.keys(targets).length - unmet.length} of ${Object.keys(targets).length} met`,
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

/** The agents' rows (issue 26): drain through 2 agents vs the same slots as database workers, idle create → RUNNING. */
function agentRows(a: AgentBenchFigures): string[] {
  const met = (ok: boolean) => (ok ? "met" : "NOT met");
  const pad = (figure: string, ours: string, baseline: string, ratio: string, goal: string) =>
    `  ${figure.padEnd(44)} ${ours.padStart(14)} ${baseline.padStart(24)} ${ratio.padStart(6)}  ${goal}`.trimEnd();
  return [
    pad(`drain ${a.tasks} through 2 agents x ${a.slotsEach}`, `${a.agentPerSec.toFixed(0)}/s`, `2 serve -n ${a.slotsEach} ${a.workerPerSec.toFixed(0)}/s`, a.ratio.toFixed(2), `≥ 0.5 ${met(a.ratio >= 0.5)}`),
    `    best of ${a.rounds.length} alternating rounds, each: agents ${a.rounds.map((r) => r.agents.toFixed(0)).join(", ")}, serve ${a.rounds.map((r) => r.workers.toFixed(0)).join(", ")}/s; claim → outcome p50: agents ${a.heldMs.agents.map((v) => v.toFixed(0)).join(", ")}, serve ${a.heldMs.workers.map((v) => v.toFixed(0)).join(", ")} ms`,
    pad("create → RUNNING idle p50, agent", `${a.agentIdle.p50.toFixed(1)} ms`, `serve ${a.workerIdle.p50.toFixed(1)} ms`, a.idleP50Ratio.toFixed(2), `≤ 2.0 ${met(a.idleP50Ratio <= 2)}`),
    `    agent ${formatPercentiles(a.agentIdle)}; serve ${formatPercentiles(a.workerIdle)}`,
  ];
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
