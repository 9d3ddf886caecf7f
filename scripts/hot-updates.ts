/**
 * How many updates of `tasks` are HOT (heap-only: a new row version on the same page, no index
 * entry), on an embedded PostgreSQL, from pg_stat_user_tables (n_tup_upd, n_tup_hot_upd):
 *
 * 1. drain: in-process workers (`--processes` of `--slots` each, heartbeat every `--heartbeat-ms`)
 *    run `--tasks` no-op tasks that sleep `--sleep-ms`, so each attempt sends several heartbeats.
 *    Claims and outcomes change status, which is indexed, so none of them is HOT: the heartbeats are
 *    the updates that are not transitions (history rows of these tasks minus their creations).
 * 2. heartbeats only: `--attempts` attempts claimed by the claim statement under `--processes`
 *    worker ids, then `--rounds` rounds of the heartbeat statement (src/store/lifecycle/attempt.ts),
 *    all on one connection, so the figures are exact (pg_stat_force_next_flush).
 *
 * `--through 0019_api_tokens` measures the schema as it was before a later migration; `--fillfactor`
 * sets the table's fillfactor after migrating (before any task is written).
 * Usage: npx tsx scripts/hot-updates.ts [--tasks 3000] [--through <migration>] [--fillfactor <n>]
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
import { openDb, type Db } from "../src/store/db.js";
import { claimNextAttempts, heartbeat, type AttemptRef } from "../src/store/lifecycle/index.js";
import { migrate, migrationsDir } from "../src/store/migrate.js";
import { insertTasks, type NewTask } from "../src/store/tasks.js";
import { startWorkers } from "../src/worker/runner.js";

const opts = new Command("hot-updates")
  .option("--tasks <n>", "no-op tasks in the drain", "3000")
  .option("--sleep-ms <n>", "how long each drained task sleeps", "2000")
  .option("--heartbeat-ms <n>", "TASK_HEARTBEAT_MS of the drain's workers", "500")
  .option("--processes <n>", "worker processes (in-process worker pools; worker ids in phase 2)", "2")
  .option("--slots <n>", "slots per worker process in the drain", "50")
  .option("--attempts <n>", "attempts heartbeated in phase 2", "500")
  .option("--rounds <n>", "heartbeat rounds in phase 2", "20")
  .option("--through <migration>", "apply migrations only up to this one (e.g. 0019_api_tokens)")
  .option("--fillfactor <n>", "set this fillfactor on tasks after migrating")
  .parse()
  .opts<{ tasks: string; sleepMs: string; heartbeatMs: string; processes: string; slots: string; attempts: string; rounds: string; through?: string; fillfactor?: string }>();

const logger = createLogger("silent");
const TASKS = Number(opts.tasks);
const PROCESSES = Number(opts.processes);

interface Counters {
  upd: number;
  hot: number;
}

/** tasks' update counters, after flushing this session's pending statistics. */
async function counters(db: Db): Promise<Counters> {
  await db.pool.query("select pg_stat_force_next_flush()");
  const { rows } = await db.pool.query("select n_tup_upd, n_tup_hot_upd from pg_stat_user_tables where relname = 'tasks'");
  return { upd: Number(rows[0].n_tup_upd), hot: Number(rows[0].n_tup_hot_upd) };
}

/** The counters once every other backend has flushed its statistics (they stop moving). */
async function settledCounters(db: Db): Promise<Counters> {
  let last = await counters(db);
  for (;;) {
    await sleep(1_500);
    const now = await counters(db);
    if (now.upd === last.upd && now.hot === last.hot) return now;
    last = now;
  }
}

const pct = (part: number, whole: number) => (whole === 0 ? "n/a" : `${((100 * part) / whole).toFixed(1)} %`);

function report(label: string, before: Counters, after: Counters, heartbeats: number) {
  const upd = after.upd - before.upd;
  const hot = after.hot - before.hot;
  console.log(`${label}: n_tup_upd ${upd}, n_tup_hot_upd ${hot}, HOT ${pct(hot, upd)}; heartbeat updates ${heartbeats}, of them HOT ${pct(hot, heartbeats)}`);
}

async function table(db: Db): Promise<string> {
  const { rows } = await db.pool.query(
    `select pg_relation_size('tasks') / current_setting('block_size')::int as pages,
       (select avg(pg_column_size(t.*))::int from tasks t) as row_bytes,
       (select reloptions from pg_class where relname = 'tasks') as options,
       (select string_agg(indexname, ', ') from pg_indexes where tablename = 'tasks' and indexdef ~ '(heartbeat_at|updated_at)') as indexed`,
  );
  const r = rows[0];
  return `tasks: ${r.pages} pages, rows of ${r.row_bytes ?? 0} bytes on average, options ${r.options ?? "(none)"}, indexes over heartbeat_at or updated_at: ${r.indexed ?? "none"}`;
}

const noop = (name: string, sleepMs: number): NewTask => ({
  name, type: "noop", parameters: { sleep_ms: sleepMs }, priority: 0, maxAttempts: 1, timeoutMs: 3_600_000, runAt: null, idempotencyKey: null, requestHash: null,
});

async function create(db: Db, n: number, prefix: string, sleepMs: number): Promise<string> {
  let first: string | undefined;
  for (let i = 0; i < n; i += 500) {
    const rows = await insertTasks(db, Array.from({ length: Math.min(500, n - i) }, (_, j) => noop(`${prefix}-${i + j}`, sleepMs)));
    first ??= rows[0]!.id;
  }
  return first!;
}

/** Updates of the tasks from `firstId` on that were transitions (one history row each, creation aside). */
async function transitions(db: Db, firstId: string, lastId?: string): Promise<number> {
  const { rows } = await db.pool.query(
    "select count(*) - count(distinct task_id) as n from task_history where task_id >= $1 and ($2::bigint is null or task_id <= $2)",
    [firstId, lastId ?? null],
  );
  return Number(rows[0].n);
}

const dir = await mkdtemp(path.join(os.tmpdir(), "hot-updates-"));
const cluster = await startEmbeddedPostgres(dir, logger);
const setup = openDb({ connectionString: cluster.url, max: 4 }, logger);
await migrate(setup, logger, migrationsDir, opts.through).finally(() => setup.close());
// One connection: pg_stat_force_next_flush() flushes the session that wrote.
const db = openDb({ connectionString: cluster.url, max: 1 }, logger);
try {
  if (opts.fillfactor) await db.pool.query(`alter table tasks set (fillfactor = ${Number(opts.fillfactor)})`);
  const { rows: applied } = await db.pool.query("select max(name) as last from kysely_migration");
  console.log(`schema through ${applied[0].last}; ${await table(db)}`);

  // 1. A drain with running heartbeats.
  const config = loadConfig(
    { workerConcurrency: Number(opts.slots), heartbeatIntervalMs: Number(opts.heartbeatMs), retainSucceededMs: 0, retainFailedMs: 0, retainCancelledMs: 0 },
    {},
  );
  const plugins = builtinPlugins(config, logger);
  const firstId = await create(db, TASKS, "drain", Number(opts.sleepMs));
  const before = await settledCounters(db);
  const t0 = performance.now();
  const workers = await Promise.all(Array.from({ length: PROCESSES }, () => startWorkers({ databaseUrl: cluster.url, registry: plugins.registry, config, logger })));
  for (;;) {
    const { rows } = await db.pool.query("select count(*) as n from tasks where id >= $1 and status in ('succeeded', 'failed', 'cancelled')", [firstId]);
    if (Number(rows[0].n) >= TASKS) break;
    await sleep(250);
  }
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(workers.map((w) => w.stop()));
  await plugins.close();
  // The workers' connections are closed: their backends flush their statistics as they exit.
  const after = await settledCounters(db);
  const moved = await transitions(db, firstId);
  console.log(
    `drain: ${TASKS} no-op tasks of ${opts.sleepMs} ms, ${PROCESSES} processes × ${opts.slots} slots, heartbeat every ${opts.heartbeatMs} ms, ${seconds.toFixed(1)} s; ${moved} transitions`,
  );
  report("drain", before, after, after.upd - before.upd - moved);

  // 2. Heartbeats only, on one connection: exact figures.
  const attempts = Number(opts.attempts);
  const phaseFirst = await create(db, attempts, "beat", 3_600_000);
  const owned = new Map<string, AttemptRef[]>();
  for (let p = 0; p < PROCESSES; p++) {
    const workerId = `hot-updates-${p}`;
    const mine: AttemptRef[] = [];
    const share = Math.ceil(attempts / PROCESSES);
    while (mine.length < share) {
      const claimed = await claimNextAttempts(db, workerId, { identifiers: ["run:default:noop"], forbiddenFlags: [], limit: Math.min(100, share - mine.length) });
      if (claimed.length === 0) break;
      mine.push(...claimed.map((t) => ({ taskId: String(t.id), attempt: t.attempts })));
    }
    owned.set(workerId, mine);
  }
  const running = [...owned.values()].reduce((n, a) => n + a.length, 0);
  const beforeBeats = await counters(db);
  for (let round = 0; round < Number(opts.rounds); round++) {
    for (const [workerId, mine] of owned) {
      const still = await heartbeat(db.kysely, workerId, [], mine);
      if (still.length !== mine.length) throw new Error(`heartbeat of ${workerId} renewed ${still.length} of ${mine.length} attempts`);
    }
    await sleep(100);
  }
  const afterBeats = await counters(db);
  console.log(`heartbeats only: ${running} running attempts (from task ${phaseFirst}) under ${PROCESSES} worker ids, ${opts.rounds} rounds`);
  report("heartbeats", beforeBeats, afterBeats, running * Number(opts.rounds));
  console.log(await table(db));
} finally {
  await db.close();
  await cluster.stop();
  await rm(dir, { recursive: true, force: true });
}
