/**
 * Reads at scale (`npm run bench -- --scale 1000000`): the same calls timed on an empty database and
 * after N finished tasks (3 history rows each) were loaded, in one run, median of 20 calls each.
 * Prints the table of docs/design/reads-at-scale.md; asserts nothing.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { startApiServer } from "../src/api/server.js";
import { loadConfig } from "../src/config.js";
import { startEmbeddedPostgres } from "../src/embedded-postgres.js";
import { TaskService, TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { createLogger } from "../src/logger.js";
import { Metrics } from "../src/metrics.js";
import { builtinPlugins } from "../src/plugins/builtin.js";
import { startWorkers } from "../src/queue/runner.js";
import { openDb, type Db } from "../src/store/db.js";
import { migrate } from "../src/store/migrate.js";
import { insertSyntheticFinishedTasks } from "./synthetic-tasks.js";
import { foldTaskCountDeltas } from "../src/store/task-counts.js";

const CALLS = 20;
const LOAD_CHUNK = 100_000;
/** A first, small load: enough for every list probe to return a full page. */
const SMALL = 1_000;

type Api = Client<typeof TaskService>;

/** One timed call: what it is and how to make it. */
interface Probe {
  label: string;
  call(): Promise<unknown>;
}

function probes(api: Api, baseUrl: string, middleToken: () => string): Probe[] {
  const get = async (p: string) => {
    const res = await fetch(`${baseUrl}${p}`);
    if (!res.ok) throw new Error(`${p}: HTTP ${res.status}`);
    await res.text();
  };
  return [
    { label: "`GetTaskStatusCounts`", call: () => api.getTaskStatusCounts({}) },
    { label: "`ListTasks` first page (50)", call: () => api.listTasks({}) },
    { label: "`ListTasks` status FAILED", call: () => api.listTasks({ statuses: [TaskStatus.FAILED] }) },
    { label: "`ListTasks` status FAILED or CANCELLED", call: () => api.listTasks({ statuses: [TaskStatus.FAILED, TaskStatus.CANCELLED] }) },
    { label: "`ListTasks` type `shell`", call: () => api.listTasks({ types: ["shell"] }) },
    { label: "`ListTasks` type `shell`, status FAILED", call: () => api.listTasks({ types: ["shell"], statuses: [TaskStatus.FAILED] }) },
    { label: "`ListTasks` `page_token` half-way down", call: () => api.listTasks({ pageToken: middleToken() }) },
    { label: "`ListTasks` page 500 (`page_number`)", call: () => api.listTasks({ pageNumber: 500 }) },
    { label: "`GET /metrics` (unauthenticated)", call: () => get("/metrics") },
    { label: "`GET /readyz`", call: () => get("/readyz") },
  ];
}

function median(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  return (sorted[Math.floor((sorted.length - 1) / 2)]! + sorted[Math.ceil((sorted.length - 1) / 2)]!) / 2;
}

/**
 * Median of CALLS calls of each probe, taken in rounds (every probe once per round) so that a burst
 * of load from elsewhere on the machine lands on all probes alike rather than on one.
 */
async function medians(list: Probe[]): Promise<number[]> {
  for (const probe of list) await probe.call(); // warm connections and plans
  const times: number[][] = list.map(() => []);
  for (let round = 0; round < CALLS; round++) {
    for (const [i, probe] of list.entries()) {
      const t0 = performance.now();
      await probe.call();
      times[i]!.push(performance.now() - t0);
    }
  }
  return times.map(median);
}

/** Median create → start of a noop task on idle workers, from the server's own timestamps. */
async function createToStart(api: Api): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const { task } = await api.createTask({ name: `probe-${i}`, type: "noop" });
    for (;;) {
      const current = (await api.getTask({ id: task!.id })).task!;
      if (current.startedAt) {
        const ms = (t: { seconds: bigint; nanos: number }) => Number(t.seconds) * 1000 + t.nanos / 1e6;
        times.push(ms(current.startedAt) - ms(current.createdAt!));
        break;
      }
      await sleep(2);
    }
  }
  return median(times);
}

async function measure(api: Api, baseUrl: string, middleToken: () => string): Promise<number[]> {
  return [...(await medians(probes(api, baseUrl, middleToken))), await createToStart(api)];
}

/**
 * Finished tasks `first`..`last` (see insertSyntheticFinishedTasks), generated inside PostgreSQL in
 * chunks, then vacuumed and analyzed as autovacuum would have done for months-old rows.
 */
async function load(db: Db, first: number, last: number, span: number, log: (line: string) => void): Promise<void> {
  const t0 = performance.now();
  for (let from = first; from <= last; from += LOAD_CHUNK) {
    const to = Math.min(last, from + LOAD_CHUNK - 1);
    await insertSyntheticFinishedTasks(db.kysely, from, to, span);
    if (last - first > LOAD_CHUNK) log(`  loaded ${to} of ${last} tasks (${((performance.now() - t0) / 1000).toFixed(0)}s)`);
  }
  await db.pool.query("vacuum analyze tasks, task_history");
  await foldTaskCountDeltas(db.kysely);
  // Write the load's dirty pages now rather than during the measurements.
  await db.pool.query("checkpoint");
  const { rows } = await db.pool.query(`select pg_size_pretty(pg_total_relation_size('tasks') + pg_total_relation_size('task_history')) as size`);
  log(`  ${last} tasks in the database (loading took ${((performance.now() - t0) / 1000).toFixed(0)}s): tasks and task_history take ${rows[0].size}`);
}

/** A page token for the page after the task half-way down the table. */
async function middleToken(db: Db): Promise<string> {
  const { rows } = await db.pool.query(`select id from tasks order by id desc offset (select count(*) / 2 from tasks) limit 1`);
  return Buffer.from(`v1:${rows[0].id}`).toString("base64url");
}

/** Runs the scale benchmark with `n` finished tasks and prints its table. */
export async function benchScale(n: number): Promise<void> {
  if (!Number.isInteger(n) || n <= SMALL) throw new Error(`--scale must be a whole number above ${SMALL}, got ${n}`);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const logger = createLogger("silent");
  const dir = await mkdtemp(path.join(os.tmpdir(), "task-bench-scale-"));
  const cluster = await startEmbeddedPostgres(dir, logger);
  const db = openDb({ connectionString: cluster.url, max: 10, statementTimeoutMillis: 0 }, logger);
  try {
    await migrate(db, logger);
    // Retention off: the loaded tasks finished up to 30 days ago, and a retention pass would shed them mid-run.
    const config = loadConfig({ port: 0, workerConcurrency: 2, reconcileIntervalMs: 0, retainSucceededMs: 0, retainFailedMs: 0, retainCancelledMs: 0 }, {});
    const plugins = builtinPlugins(config, logger);
    const server = await startApiServer({ db, databaseUrl: cluster.url, registry: plugins.registry, config, logger, metrics: new Metrics() });
    const workers = await startWorkers({ databaseUrl: cluster.url, registry: plugins.registry, config, logger });
    const api = createClient(TaskService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    let middle = "";
    try {
      log(`bench --scale ${n}: empty database`);
      const empty = await measure(api, server.url, () => middle);
      // Every list returns a full page from here on, so the growth below is the table's, not the page's.
      await load(db, 1, SMALL, n, log);
      middle = await middleToken(db);
      const small = await measure(api, server.url, () => middle);
      log(`bench --scale ${n}: loading`);
      await load(db, SMALL + 1, n, n, log);
      middle = await middleToken(db);
      const loaded = await measure(api, server.url, () => middle);
      const labels = [...probes(api, server.url, () => middle).map((p) => p.label), "idle create → start"];
      const ms = (x: number) => `${x.toFixed(1)} ms`;
      const lines = [
        `bench --scale ${n}: median of ${CALLS} calls, node ${process.version}, ${os.cpus().length} cores`,
        "",
        `| call (median of ${CALLS}) | empty | ${SMALL.toLocaleString("en")} finished | ${n.toLocaleString("en")} finished | growth from empty | from ${SMALL.toLocaleString("en")} |`,
        "| --- | --- | --- | --- | --- | --- |",
        ...labels.map(
          (label, i) =>
            `| ${label} | ${ms(empty[i]!)} | ${ms(small[i]!)} | ${ms(loaded[i]!)} | ${(loaded[i]! / empty[i]!).toFixed(1)}× | ${(loaded[i]! / small[i]!).toFixed(1)}× |`,
        ),
        "",
      ];
      process.stdout.write(lines.join("\n"));
    } finally {
      await workers.stop();
      await server.close();
      await plugins.close();
    }
  } finally {
    await db.close();
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
