/**
 * Issue 25 item 2, measured: would splitting `tasks` into a write-once row (what was asked) and a
 * narrow execution row (status, attempt, owner, lease, outcome) make a task's transitions cheaper?
 *
 * On one embedded PostgreSQL with pg_stat_statements, migrated to the current schema and filled
 * with `--tasks` finished tasks (plus the queued ones the rounds consume), the same tasks are laid
 * out both ways side by side:
 *
 * - single: `tasks` as it is (13 indexes, the count and finish triggers, task_history's foreign key);
 * - split: `split_specs` (the write-once columns and the indexes of what lists read by: type, queue,
 *   name prefix, idempotency key, schedule tick) and `split_runs` (the execution columns, the task's
 *   queue, type and schedule copied in, never changed, for the triggers and partial indexes; the
 *   indexes on status: lists, the lease check, queue limits, waiting per queue, cancels, a schedule's
 *   unfinished tasks, retention; fillfactor 70), with the same triggers and a history table of the
 *   same shape (indexes, change-feed trigger, foreign key to split_specs).
 *
 * Each round claims a batch (QUEUED → RUNNING: guarded update, returning the whole task, one history
 * row each) and records its outcome (RUNNING → SUCCEEDED) on one layout, then on the other, in
 * alternating order. Reported: PostgreSQL's execution time per task (pg_stat_statements, so the
 * client and the network are left out), at each batch size, the same ratio of the client's wall time
 * (round trips included, as a worker sees them), and a list read on each layout.
 * Usage: npx tsx scripts/split-layout.ts [--tasks 200000] [--batches 1,10,50] [--per-batch 2000]
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Command } from "commander";
import pg from "pg";
import { startEmbeddedPostgres } from "../src/embedded-postgres.js";
import { createLogger } from "../src/logger.js";
import { openDb } from "../src/store/db.js";
import { migrate } from "../src/store/migrate.js";

const opts = new Command("split-layout")
  .option("--tasks <n>", "finished tasks already in the table", "200000")
  .option("--batches <list>", "claim/outcome batch sizes", "1,10,50")
  .option("--per-batch <n>", "tasks claimed and finished per layout at each batch size", "2000")
  .parse()
  .opts<{ tasks: string; batches: string; perBatch: string }>();

const batches = opts.batches.split(",").map(Number);
const perBatch = Number(opts.perBatch);
const queuedCount = batches.length * perBatch;
const logger = createLogger("silent");
const dir = await mkdtemp(path.join(os.tmpdir(), "split-layout-"));
let cluster = await startEmbeddedPostgres(dir, logger);
{
  const admin = new pg.Client({ connectionString: cluster.url });
  await admin.connect();
  await admin.query("alter system set shared_preload_libraries = 'pg_stat_statements'");
  await admin.query("alter system set pg_stat_statements.track_planning = on");
  await admin.end();
  await cluster.stop();
  cluster = await startEmbeddedPostgres(dir, logger);
}
const db = openDb({ connectionString: cluster.url, max: 2 }, logger);
const client = new pg.Client({ connectionString: cluster.url });
try {
  await migrate(db, logger);
  await client.connect();
  const q = (text: string, values?: unknown[]) => client.query(text, values);
  await q("create extension if not exists pg_stat_statements");
  const finished = Number(opts.tasks);
  await q(`insert into tasks (name, type, status, parameters, max_attempts, timeout_ms, queue, attempts, started_at, finished_at, result)
    select 'task-' || g, (array['noop', 'send_email', 'shell'])[1 + g % 3], 'succeeded', '{"to": "someone@example.com", "n": 1}', 3, 60000,
      (array['default', 'emails'])[1 + g % 2], 1, now(), now(), '{}' from generate_series(1, ${finished}) g`);
  await q(`insert into tasks (name, type, parameters, max_attempts, timeout_ms)
    select 'queued-' || g, 'noop', '{"to": "someone@example.com", "n": 1}', 3, 60000 from generate_series(1, ${queuedCount}) g`);
  await q(`create table split_specs as select id, name, type, parameters, parameters_bytes, priority, max_attempts, timeout_ms, idempotency_key, request_hash,
      created_at, schedule_id, scheduled_at, queue, backoff_base_ms, backoff_max_ms, traceparent from tasks`);
  await q(`alter table split_specs add primary key (id)`);
  for (const index of ["(type, id desc)", "(queue, id desc)", "(name text_pattern_ops)"]) await q(`create index on split_specs ${index}`);
  await q(`create unique index on split_specs (idempotency_key) where idempotency_key is not null`);
  await q(`create unique index on split_specs (schedule_id, scheduled_at) where schedule_id is not null`);
  await q(`create table split_runs with (fillfactor = 70) as select id as task_id, queue as run_queue, type as run_type, schedule_id as run_schedule_id,
      status, attempts, run_at, result, result_bytes, last_error, worker_id, heartbeat_at, cancel_requested_at, cancel_reason, updated_at, started_at, finished_at,
      paused_from, paused_at from tasks`);
  await q(`alter table split_runs add primary key (task_id), add foreign key (task_id) references split_specs on delete cascade`);
  for (const index of [
    "(status, task_id desc)",
    "(worker_id) where status = 'running' or worker_id is not null",
    "(run_queue) where status = 'running'",
    "(run_queue, task_id) where status in ('queued', 'retrying')",
    "(task_id) where cancel_requested_at is not null and status in ('queued', 'retrying')",
    "(run_schedule_id) where run_schedule_id is not null and status not in ('succeeded', 'failed', 'cancelled')",
    "(status, finished_at) where status in ('succeeded', 'failed', 'cancelled')",
  ])
    await q(`create index on split_runs ${index}`);
  await q(`create function split_counts() returns trigger language plpgsql as $$ begin
    insert into task_count_deltas (queue, type, status, delta) values (old.run_queue, old.run_type, old.status, -1), (new.run_queue, new.run_type, new.status, 1);
    return null; end $$`);
  await q(`create trigger split_counts after update of status on split_runs for each row when (old.status is distinct from new.status) execute function split_counts()`);
  await q(`create trigger split_finishes after update of status on split_runs for each row when (old.status is distinct from new.status
    and new.status in ('succeeded', 'failed', 'cancelled', 'retrying')) execute function task_finishes_on_update()`);
  await q(`create table split_history (like task_history including all)`);
  await q(`alter table split_history add foreign key (task_id) references split_specs on delete cascade`);
  await q(`create trigger split_history_notify after insert on split_history referencing new table as new_rows for each statement execute function notify_task_events()`);
  await q("vacuum analyze");

  const single = {
    claim: `/* single claim */ with changed as (update tasks set status = 'running', attempts = attempts + 1, worker_id = 'w', heartbeat_at = now(), started_at = now(), updated_at = now()
      where id = any($1::bigint[]) and status in ('queued', 'retrying') and cancel_requested_at is null returning *),
      history as (insert into task_history (task_id, status, attempt, details) select id, status, attempts, 'attempt ' || attempts || ' started' from changed)
      select * from changed`,
    outcome: `/* single outcome */ with changed as (update tasks set status = 'succeeded', worker_id = null, heartbeat_at = null, finished_at = now(), result = '{}', updated_at = now()
      where id = any($1::bigint[]) and status = 'running' and worker_id = 'w' returning *),
      history as (insert into task_history (task_id, status, attempt, details) select id, status, attempts, 'attempt ' || attempts || ' succeeded' from changed)
      select * from changed`,
    list: `select * from tasks where status = 'succeeded' and type = 'shell' order by id desc limit 50`,
  };
  const split = {
    claim: `/* split claim */ with changed as (update split_runs r set status = 'running', attempts = attempts + 1, worker_id = 'w', heartbeat_at = now(), started_at = now(), updated_at = now()
      from split_specs s where s.id = r.task_id and r.task_id = any($1::bigint[]) and status in ('queued', 'retrying') and cancel_requested_at is null returning s.*, r.*),
      history as (insert into split_history (task_id, status, attempt, details) select id, status, attempts, 'attempt ' || attempts || ' started' from changed)
      select * from changed`,
    outcome: `/* split outcome */ with changed as (update split_runs r set status = 'succeeded', worker_id = null, heartbeat_at = null, finished_at = now(), result = '{}', updated_at = now()
      from split_specs s where s.id = r.task_id and r.task_id = any($1::bigint[]) and status = 'running' and worker_id = 'w' returning s.*, r.*),
      history as (insert into split_history (task_id, status, attempt, details) select id, status, attempts, 'attempt ' || attempts || ' succeeded' from changed)
      select * from changed`,
    list: `select * from split_specs s join split_runs r on r.task_id = s.id where r.status = 'succeeded' and s.type = 'shell' order by s.id desc limit 50`,
  };

  const queued: string[] = (await q("select id::text from tasks where status = 'queued' order by id")).rows.map((r) => r.id);
  const statementMs = async (marker: string, column: "total_exec_time" | "total_plan_time") =>
    Number((await q(`select coalesce(sum(${column}), 0) as ms from pg_stat_statements where query like $1`, [`/* ${marker} %`])).rows[0].ms);
  console.log(`split-layout: ${finished} finished tasks, ${queuedCount} queued; per task, claim + outcome, single / split (single ÷ split: above 1, the split is cheaper)`);
  console.log("  batch   execution µs (pg_stat_statements)   planning µs (pg_stat_statements)   client wall, single ÷ split");
  let offset = 0;
  for (const batch of batches) {
    await q("select pg_stat_statements_reset()");
    const wall = new Map<object, number>();
    const ids = queued.slice(offset, offset + perBatch);
    offset += perBatch;
    for (let i = 0, round = 0; i < ids.length; i += batch, round++) {
      const chunk = ids.slice(i, i + batch);
      for (const layout of round % 2 === 0 ? [single, split] : [split, single]) {
        const t0 = performance.now();
        const claimed = await q(layout.claim, [chunk]);
        const recorded = await q(layout.outcome, [chunk]);
        wall.set(layout, (wall.get(layout) ?? 0) + performance.now() - t0);
        if (claimed.rowCount !== chunk.length || recorded.rowCount !== chunk.length) throw new Error(`a round changed ${claimed.rowCount}/${recorded.rowCount} of ${chunk.length}`);
      }
    }
    const perTask = async (layout: string, column: "total_exec_time" | "total_plan_time") =>
      ((await statementMs(`${layout} claim`, column)) + (await statementMs(`${layout} outcome`, column))) * 1000 / ids.length;
    const exec = { single: await perTask("single", "total_exec_time"), split: await perTask("split", "total_exec_time") };
    const plan = { single: await perTask("single", "total_plan_time"), split: await perTask("split", "total_plan_time") };
    const wallRatio = wall.get(single)! / wall.get(split)!;
    const cell = (a: number, b: number, width: number) => `${a.toFixed(0)} / ${b.toFixed(0)} (${(a / b).toFixed(2)})`.padStart(width);
    console.log(`  ${String(batch).padStart(5)}   ${cell(exec.single, exec.split, 24)}   ${cell(plan.single, plan.split, 24)}   ${wallRatio.toFixed(2).padStart(18)}`);
  }
  const listMs = async (text: string) => {
    const times: number[] = [];
    for (let i = 0; i < 21; i++) {
      const plan = (await q(`explain (analyze, format json) ${text}`)).rows[0]["QUERY PLAN"][0];
      times.push(plan["Execution Time"]);
    }
    return times.sort((a, b) => a - b)[10]!;
  };
  console.log(`  list of the newest 50 succeeded shell tasks (median of 21): single ${(await listMs(single.list)).toFixed(2)} ms, split ${(await listMs(split.list)).toFixed(2)} ms`);
  const sizes = (await q(`select relname, pg_total_relation_size(oid) / 1048576 as mb from pg_class where relname in ('tasks', 'split_specs', 'split_runs') order by relname`)).rows;
  console.log(`  size with indexes (MB): ${sizes.map((r) => `${r.relname} ${r.mb}`).join(", ")}`);
} finally {
  await client.end().catch(() => {});
  await db.close();
  await cluster.stop();
  await rm(dir, { recursive: true, force: true });
}
