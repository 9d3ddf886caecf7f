/**
 * Retention at scale, the measurement behind docs/design/reads-at-scale.md "Retention": shedding N
 * finished tasks (3 history rows and 2 output lines each) by batched DELETE, against dropping
 * time partitions of task_history and task_logs. For each: time, WAL written, sizes and dead rows
 * afterwards, and a noop drain's throughput while it runs. Asserts nothing.
 * Usage: npx tsx scripts/bench-retention.ts --tasks 1000000
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Command } from "commander";
import { loadConfig } from "../src/config.js";
import { startEmbeddedPostgres } from "../src/embedded-postgres.js";
import { createLogger } from "../src/logger.js";
import { builtinPlugins } from "../src/plugins/builtin.js";
import { startWorkers } from "../src/worker/runner.js";
import { openDb, type Db } from "../src/store/db.js";
import { migrate } from "../src/store/migrate.js";
import { insertSyntheticFinishedTasks } from "./bench/synthetic-tasks.js";
import { deleteExpired } from "../src/store/lifecycle/index.js";
import { foldTaskCountDeltas } from "../src/store/task-counts.js";
import { insertTasks } from "../src/store/tasks.js";

const opts = new Command("bench-retention")
  .option("--tasks <n>", "finished tasks to shed", "1000000")
  .option("--batch <n>", "tasks per DELETE", "10000")
  .option("--drain <n>", "noop tasks in each drain", "3000")
  .option("--job-only", "measure only C, the retention job as shipped (deleteExpiredTasks), not A and B")
  .option("--job-batch <n>", "tasks per statement of the retention job (TASK_RETENTION_BATCH)", "1000")
  .parse()
  .opts<{ tasks: string; batch: string; drain: string; jobOnly?: boolean; jobBatch: string }>();
const N = Number(opts.tasks);
const BATCH = Number(opts.batch);
const DRAIN = Number(opts.drain);
const JOB_BATCH = Number(opts.jobBatch);
const logger = createLogger("silent");
const log = (line: string) => process.stderr.write(`${line}\n`);

async function one<T = Record<string, string>>(db: Db, text: string, values: unknown[] = []): Promise<T> {
  return (await db.pool.query(text, values)).rows[0] as T;
}

const walLsn = async (db: Db) => (await one<{ lsn: string }>(db, "select pg_current_wal_lsn()::text as lsn")).lsn;
const walSince = async (db: Db, lsn: string) => Number((await one<{ b: string }>(db, "select pg_wal_lsn_diff(pg_current_wal_lsn(), $1) as b", [lsn])).b);
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;

/** Total size (heap + indexes + toast) of the tables, and their dead rows. */
async function sizes(db: Db, tables: string[]): Promise<{ bytes: number; dead: number }> {
  const row = await one<{ bytes: string; dead: string }>(
    db,
    `select coalesce(sum(pg_total_relation_size(c.oid)), 0) as bytes, coalesce(sum(s.n_dead_tup), 0) as dead
     from pg_class c left join pg_stat_user_tables s on s.relid = c.oid
     where c.relname = any($1) or c.oid in (select inhrelid from pg_inherits where inhparent in (select oid from pg_class where relname = any($1)))`,
    [tables],
  );
  return { bytes: Number(row.bytes), dead: Number(row.dead) };
}

/** Creates DRAIN noop tasks and times workers running them all (tasks/s). */
async function drain(db: Db, url: string): Promise<number> {
  // Retention off in the drain's workers: only the pass under measurement deletes.
  const config = loadConfig({ workerConcurrency: 10, reconcileIntervalMs: 0, retainSucceededMs: 0, retainFailedMs: 0, retainCancelledMs: 0 }, {});
  const plugins = builtinPlugins(config, logger);
  let firstId: string | undefined;
  for (let i = 0; i < DRAIN; i += 500) {
    const rows = await insertTasks(db, Array.from({ length: Math.min(500, DRAIN - i) }, (_, j) => ({
      name: `drain-${i + j}`, type: "noop", parameters: {}, priority: 0, maxAttempts: 1, timeoutMs: 30_000, runAt: null, idempotencyKey: null, requestHash: null,
    })));
    firstId ??= rows[0]!.id;
  }
  const t0 = performance.now();
  const workers = await startWorkers({ databaseUrl: url, registry: plugins.registry, config, logger });
  // An id range on the primary key: counting by name would scan the million rows under test.
  const done = async () => Number((await one(db, "select count(*) as n from tasks where id >= $1 and status = 'succeeded'", [firstId])).n);
  while ((await done()) < DRAIN) await sleep(50);
  const rate = DRAIN / ((performance.now() - t0) / 1000);
  await workers.stop();
  await plugins.close();
  return rate;
}

/** Loads N finished tasks older than the cutoff plus their logs, into the live schema. */
async function load(db: Db): Promise<void> {
  const t0 = performance.now();
  for (let from = 1; from <= N; from += 100_000) {
    const to = Math.min(N, from + 99_999);
    await insertSyntheticFinishedTasks(db.kysely, from, to, N);
    log(`  loaded ${to} of ${N} (${((performance.now() - t0) / 1000).toFixed(0)}s)`);
  }
  await db.pool.query(
    // One chunk of two lines per task (task_logs holds chunks since migration 0014).
    `insert into task_logs (task_id, first_seq, last_seq, attempt, streams, lines, created_at)
     select id, 1, 2, 1, 'oo', E'line 1 of a finished task\\nline 2 of a finished task', created_at from tasks where name like 'bench-%'`,
  );
  await db.pool.query("vacuum analyze tasks, task_history, task_logs");
}

/** A: the retention job deletes finished tasks in batches; history and logs go by ON DELETE CASCADE. */
async function deleteInBatches(db: Db, url: string, cutoff: string) {
  const tables = ["tasks", "task_history", "task_logs"];
  const before = await sizes(db, tables);
  const lsn = await walLsn(db);
  const t0 = performance.now();
  let deleting = true;
  const job = deleteOldTasks(db, cutoff).then(() => void (deleting = false));
  const during = await drain(db, url);
  const stillDeleting = deleting;
  await job;
  const seconds = (performance.now() - t0) / 1000;
  const wal = await walSince(db, lsn);
  const after = await sizes(db, tables);
  await db.pool.query("vacuum tasks, task_history, task_logs");
  const vacuumed = await sizes(db, tables);
  return { seconds, wal, before, after, vacuumed, during, stillDeleting };
}

/** Deletes the loaded finished tasks older than the cutoff, BATCH at a time, oldest first. */
async function deleteOldTasks(db: Db, cutoff: string): Promise<void> {
  for (;;) {
    const { rowCount } = await db.pool.query(
      `delete from tasks where id in (
         select id from tasks where status in ('succeeded', 'failed', 'cancelled') and finished_at < $1 and name like 'bench-%'
         order by id limit $2)`,
      [cutoff, BATCH],
    );
    if (!rowCount) return;
  }
}

/**
 * B: task_history and task_logs partitioned by created_at (by day here, over the 30 days loaded;
 * by month in the design); retention detaches and drops the partitions before the cutoff, then
 * deletes the tasks rows alone (the partitioned tables carry no foreign key, so nothing cascades).
 */
async function dropPartitions(db: Db, url: string, cutoff: string) {
  await db.pool.query(`
    create table history_p (like task_history including defaults) partition by range (created_at);
    create table logs_p (like task_logs including defaults) partition by range (created_at)`);
  const bound = (days: number) => `'${new Date(Date.parse(cutoff) - days * 86_400_000).toISOString()}'`;
  for (const t of ["history_p", "logs_p"]) {
    await db.pool.query(`create table ${t}_live partition of ${t} for values from (${bound(0)}) to (maxvalue)`);
    await db.pool.query(`create table ${t}_older partition of ${t} for values from (minvalue) to (${bound(31)})`);
    for (let d = 1; d <= 31; d++) await db.pool.query(`create table ${t}_d${d} partition of ${t} for values from (${bound(d)}) to (${bound(d - 1)})`);
  }
  await db.pool.query("create index on history_p (task_id, id)");
  await db.pool.query("alter table logs_p add primary key (task_id, seq, created_at)");
  await db.pool.query("insert into history_p select * from task_history");
  await db.pool.query("insert into logs_p select * from task_logs");
  // From here on history and logs live in the partitioned tables only.
  await db.pool.query("alter table task_history drop constraint task_history_task_id_fkey");
  await db.pool.query("alter table task_logs drop constraint task_logs_task_id_fkey");
  await db.pool.query("truncate task_history, task_logs");
  await db.pool.query("vacuum analyze history_p, logs_p, task_history, task_logs");
  const tables = ["tasks", "history_p", "logs_p"];
  const before = await sizes(db, tables);
  const lsn = await walLsn(db);
  const start = performance.now();
  let deleting = true;
  const job = (async () => {
    for (const t of ["history_p", "logs_p"]) {
      for (const part of [`${t}_older`, ...Array.from({ length: 31 }, (_, i) => `${t}_d${i + 1}`)]) {
        await db.pool.query(`alter table ${t} detach partition ${part} concurrently`);
        await db.pool.query(`drop table ${part}`);
      }
    }
    const dropped = (performance.now() - start) / 1000;
    await deleteOldTasks(db, cutoff);
    deleting = false;
    return dropped;
  })();
  const during = await drain(db, url);
  const stillDeleting = deleting;
  const dropSeconds = await job;
  const seconds = (performance.now() - start) / 1000;
  const wal = await walSince(db, lsn);
  const after = await sizes(db, tables);
  return { seconds, dropSeconds, wal, before, after, during, stillDeleting };
}

/**
 * C: the retention job as shipped (store/retention.ts deleteExpiredTasks, every outcome kept one
 * day), while a drain runs; then checks that the maintained counts still equal a real count.
 */
async function retentionJob(db: Db, url: string) {
  const tables = ["tasks", "task_history", "task_logs"];
  const before = await sizes(db, tables);
  const lsn = await walLsn(db);
  const t0 = performance.now();
  let deleting = true;
  const policy = { succeededMs: 86_400_000, failedMs: 86_400_000, cancelledMs: 86_400_000 };
  let slowest = 0;
  const job = (async () => {
    let total = 0;
    let batches = 0;
    // The job's own statement, one at a time, so the slowest one (the longest any row lock is
    // held) is measured; deleteExpiredTasks runs the same loop under a time budget.
    for (const status of ["succeeded", "failed", "cancelled"] as const) {
      for (;;) {
        const b0 = performance.now();
        const n = await deleteExpired(db.kysely, status, policy[`${status}Ms`], JOB_BATCH);
        slowest = Math.max(slowest, performance.now() - b0);
        total += n;
        batches++;
        if (n < JOB_BATCH) break;
      }
    }
    deleting = false;
    return { total, batches };
  })();
  const during = await drain(db, url);
  const stillDeleting = deleting;
  const { total, batches } = await job;
  const seconds = (performance.now() - t0) / 1000;
  const wal = await walSince(db, lsn);
  const after = await sizes(db, tables);
  await foldTaskCountDeltas(db.kysely);
  const mismatch = await one<{ n: string }>(
    db,
    `select count(*) as n from (select type, status, count(*) as n from tasks group by type, status) a
     full join (select type, status, sum(count) as n from task_counts group by type, status having sum(count) <> 0) b using (type, status)
     where a.n is distinct from b.n`,
  );
  const real = await one<{ n: string }>(db, "select count(*) as n from tasks");
  const left = await one<{ n: string }>(db, "select count(*) as n from tasks where finished_at < now() - interval '1 day'");
  const kept = await one<{ n: string }>(db, "select coalesce(sum(count), 0) as n from task_counts");
  return { seconds, wal, before, after, during, stillDeleting, total, batches, slowest, countsExact: real.n === kept.n && mismatch.n === "0", left: Number(left.n) };
}

async function mainJobOnly() {
  const dir = await mkdtemp(path.join(os.tmpdir(), "task-bench-retention-"));
  const cluster = await startEmbeddedPostgres(dir, logger);
  const db = openDb({ connectionString: cluster.url, max: 10, statementTimeoutMillis: 0 }, logger);
  try {
    await migrate(db, logger);
    log(`loading ${N} finished tasks`);
    await load(db);
    const loadedIdle = await drain(db, cluster.url);
    const c = await retentionJob(db, cluster.url);
    process.stdout.write(
      [
        `bench-retention (job only): ${N} finished tasks (3 history rows, 2 log lines each), retention job batches of ${JOB_BATCH}, drain of ${DRAIN} noop tasks, ${os.cpus().length} cores`,
        `  drain with the tasks stored, nothing else running: ${loadedIdle.toFixed(0)} tasks/s`,
        `  C retention job: deleted ${c.total} in ${c.seconds.toFixed(1)} s (${(c.total / c.seconds).toFixed(0)} tasks/s, ${c.batches} statements, slowest ${c.slowest.toFixed(0)} ms), WAL ${mb(c.wal)}; ${mb(c.before.bytes)} before, ${mb(c.after.bytes)} after (${c.after.dead} dead rows); drain during it ${c.during.toFixed(0)} tasks/s${c.stillDeleting ? "" : " (the job finished before the drain)"}; expired tasks left: ${c.left}; counts exact: ${c.countsExact}`,
        "",
      ].join("\n"),
    );
  } finally {
    await db.close();
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

async function main() {
  if (opts.jobOnly) return mainJobOnly();
  const dir = await mkdtemp(path.join(os.tmpdir(), "task-bench-retention-"));
  const cluster = await startEmbeddedPostgres(dir, logger);
  const db = openDb({ connectionString: cluster.url, max: 10, statementTimeoutMillis: 0 }, logger);
  try {
    await migrate(db, logger);
    const idle = await drain(db, cluster.url);
    log(`drain alone: ${idle.toFixed(0)} tasks/s; loading ${N} finished tasks`);
    await load(db);
    const loadedIdle = await drain(db, cluster.url);
    log(`drain with ${N} finished tasks stored: ${loadedIdle.toFixed(0)} tasks/s; copying history and logs into partitioned tables`);
    const cutoff = new Date(Date.now() - 86_400_000).toISOString();
    const b = await dropPartitions(db, cluster.url, cutoff);
    log("B done; reloading for A");
    await db.pool.query("drop table history_p, logs_p");
    await db.pool.query("delete from tasks where name like 'bench-%'");
    await db.pool.query("alter table task_history add constraint task_history_task_id_fkey foreign key (task_id) references tasks (id) on delete cascade");
    await db.pool.query("alter table task_logs add constraint task_logs_task_id_fkey foreign key (task_id) references tasks (id) on delete cascade");
    await db.pool.query("vacuum full tasks, task_history, task_logs");
    await load(db);
    const a = await deleteInBatches(db, cluster.url, cutoff);
    const lines = [
      `bench-retention: ${N} finished tasks (3 history rows, 2 log lines each), batches of ${BATCH}, drain of ${DRAIN} noop tasks, ${os.cpus().length} cores`,
      `  drain, nothing else running: ${idle.toFixed(0)} tasks/s empty, ${loadedIdle.toFixed(0)} tasks/s with the tasks stored`,
      `  A batched DELETE (cascade): ${a.seconds.toFixed(1)} s, WAL ${mb(a.wal)}; tasks+history+logs ${mb(a.before.bytes)} before, ${mb(a.after.bytes)} after (${a.after.dead} dead rows), ${mb(a.vacuumed.bytes)} after VACUUM; drain during it ${a.during.toFixed(0)} tasks/s${a.stillDeleting ? "" : " (the delete finished before the drain)"}`,
      `  B drop partitions + DELETE tasks rows: ${b.seconds.toFixed(1)} s (partitions ${b.dropSeconds.toFixed(2)} s), WAL ${mb(b.wal)}; ${mb(b.before.bytes)} before, ${mb(b.after.bytes)} after (${b.after.dead} dead rows); drain during it ${b.during.toFixed(0)} tasks/s${b.stillDeleting ? "" : " (finished before the drain)"}`,
      "",
    ];
    process.stdout.write(lines.join("\n"));
  } finally {
    await db.close();
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench-retention: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
