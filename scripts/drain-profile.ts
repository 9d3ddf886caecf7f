/**
 * Where a drain's time goes, from PostgreSQL's side: a worker pool of `--slots` in this process
 * drains `--tasks` pre-created no-op tasks on an embedded PostgreSQL with pg_stat_statements
 * (planning tracked), then prints the drain rate, this process's CPU time, commits and row writes
 * per task (pg_stat_database), and the statements by total time (calls, execution and planning).
 * Run it with `node --cpu-prof --import tsx` to see the worker's side.
 * Usage: npx tsx scripts/drain-profile.ts [--tasks 5000] [--slots 10] [--labels region=eu] [--task-labels region=eu]
 * (--labels: the worker's labels; --task-labels: what every task requires, so a routed drain can be
 * set beside an unrouted one; --unmatched N: N tasks, created first, that require a label the worker
 * lacks, left waiting ahead of the drained ones: what a labeled worker pays for them).
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Command } from "commander";
import { loadConfig } from "../src/config.js";
import { labelPairs, parseLabels } from "../src/labels.js";
import { startEmbeddedPostgres } from "../src/embedded-postgres.js";
import { createLogger } from "../src/logger.js";
import { builtinPlugins } from "../src/plugins/builtin.js";
import { openDb } from "../src/store/db.js";
import { FINISHED_STATUSES } from "../src/store/lifecycle/states.js";
import { migrate } from "../src/store/migrate.js";
import { insertTasks, type NewTask } from "../src/store/tasks.js";
import { startWorkers } from "../src/worker/runner.js";

const opts = new Command("drain-profile")
  .option("--tasks <n>", "no-op tasks to drain", "5000")
  .option("--slots <n>", "worker slots", "10")
  .option("--labels <k=v,...>", "the worker's labels (serve --labels)", "")
  .option("--task-labels <k=v,...>", "the labels every task requires (task create --on)", "")
  .option("--unmatched <n>", "tasks created first that require a label no worker has (they stay waiting)", "0")
  .parse()
  .opts<{ tasks: string; slots: string; labels: string; taskLabels: string; unmatched: string }>();
const UNMATCHED = Number(opts.unmatched);
const taskLabels = labelPairs(parseLabels(opts.taskLabels));
const TASKS = Number(opts.tasks);
const logger = createLogger("silent");
const dir = await mkdtemp(path.join(os.tmpdir(), "drain-profile-"));
let cluster = await startEmbeddedPostgres(dir, logger);
{
  const admin = openDb({ connectionString: cluster.url, max: 1 }, logger);
  await admin.pool.query("alter system set shared_preload_libraries = 'pg_stat_statements'");
  await admin.pool.query("alter system set pg_stat_statements.track_planning = on");
  await admin.close();
  await cluster.stop();
  cluster = await startEmbeddedPostgres(dir, logger);
}
const db = openDb({ connectionString: cluster.url, max: 2 }, logger);
try {
  await migrate(db, logger);
  await db.pool.query("create extension if not exists pg_stat_statements");
  const noop = (name: string): NewTask => ({ name, type: "noop", parameters: {}, priority: 0, maxAttempts: 1, timeoutMs: 3_600_000, runAt: null, idempotencyKey: null, requestHash: null, labels: taskLabels });
  for (let i = 0; i < UNMATCHED; i += 500) {
    await insertTasks(db, Array.from({ length: Math.min(500, UNMATCHED - i) }, (_, j) => ({ ...noop(`unmatched-${i + j}`), labels: [...taskLabels, "nobody=1"].sort() })));
  }
  for (let i = 0; i < TASKS; i += 500) await insertTasks(db, Array.from({ length: Math.min(500, TASKS - i) }, (_, j) => noop(`drain-${i + j}`)));
  await db.pool.query("vacuum analyze");
  // Let the creates' statistics land before the starting point.
  await sleep(1_000);
  const stats = async () =>
    (await db.pool.query("select xact_commit, tup_inserted, tup_updated, tup_deleted from pg_stat_database where datname = current_database()")).rows[0] as Record<string, string>;
  await db.pool.query("select pg_stat_statements_reset()");
  const before = await stats();
  const config = loadConfig({ workerConcurrency: Number(opts.slots), workerLabels: opts.labels }, {});
  const plugins = builtinPlugins(config, logger);
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const workers = await startWorkers({ databaseUrl: cluster.url, registry: plugins.registry, config, logger });
  for (;;) {
    const { rows } = await db.pool.query("select count(*)::int as n from tasks where status = any($1::task_status[])", [FINISHED_STATUSES]);
    if (rows[0].n >= TASKS) break;
    await sleep(50);
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await workers.stop();
  await plugins.close();
  await sleep(1_000);
  const after = await stats();
  const routed = opts.labels || opts.taskLabels ? ` (worker labels ${opts.labels || "none"}, task labels ${opts.taskLabels || "none"}${UNMATCHED ? `, ${UNMATCHED} unmatched waiting ahead` : ""})` : "";
  console.log(`drain: ${TASKS} no-op tasks${routed}, ${opts.slots} slots, ${seconds.toFixed(2)} s = ${(TASKS / seconds).toFixed(0)}/s; this process's CPU ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s`);
  console.log(`per task: ${Object.keys(before).map((k) => `${k} ${((Number(after[k]) - Number(before[k])) / TASKS).toFixed(2)}`).join(", ")}`);
  const { rows } = await db.pool.query(`select calls, plans, round(total_exec_time::numeric, 1) as exec_ms, round(total_plan_time::numeric, 1) as plan_ms,
      rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 90) as statement
    from pg_stat_statements where query not like '%pg_stat_statements%' order by total_exec_time + total_plan_time desc limit 8`);
  console.table(rows);
} finally {
  await db.close();
  await cluster.stop();
  await rm(dir, { recursive: true, force: true });
}
