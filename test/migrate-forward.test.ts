import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/logger.js";
import { openDb, type Db } from "../src/store/db.js";
import { JOB_MAX_ATTEMPTS, queueFlag, RUN_TASK_PREFIX, taskJobKey } from "../src/store/jobs.js";
import { claimNextAttempts, heartbeat, rescueStatement, type AttemptRef } from "../src/store/lifecycle/index.js";
import { migrate, migrationsDir } from "../src/store/migrate.js";
import { lostAttempts, settleLostAttempts } from "../src/store/reconcile.js";
import { countTaskGroups } from "../src/store/task-counts.js";
import { adminQuery, urlForDatabase } from "./helpers/database.js";

/**
 * The forward migration of a filled database (issue 25, "an existing database migrates forward in
 * place"): a database at the schema of FROM, filled with TASKS tasks in every status (running
 * attempts with their owner and heartbeat, waiting tasks with their jobs, and the history of each),
 * then every migration after FROM applied in place. Nothing may be lost, the counts must stay
 * exact, running attempts stay fenced, waiting tasks stay claimable, and the lease check reads an
 * index. The fill is written against FROM's schema, so it stays valid as later migrations change
 * the tables; the time the migrations took is printed.
 */
const FROM = "0019_api_tokens";
const TASKS = 200_000;
const WORKERS = ["w-0", "w-1", "w-2", "w-3"];
const logger = createLogger(process.env.TEST_LOG_LEVEL ?? "silent");
const later = readdirSync(migrationsDir)
  .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
  .map((f) => f.replace(/\.sql$/, ""))
  .filter((m) => m > FROM)
  .sort();
const name = `forward_${randomBytes(6).toString("hex")}`;
let db: Db;

/** Everything that must survive the migration, as figures and a digest of every task's state. */
async function inventory() {
  const q = async (text: string) => (await db.pool.query(text)).rows;
  return {
    byStatus: await q("select status::text, count(*)::int as n from tasks group by status order by status"),
    digest: (await q(`select md5(string_agg(concat_ws(':', id, status, attempts, worker_id, heartbeat_at, paused_from, run_at, finished_at, queue, type), ',' order by id)) as d from tasks`))[0].d,
    history: (await q("select count(*)::int as n, md5(string_agg(concat_ws(':', task_id, status, attempt), ',' order by id)) as d from task_history"))[0],
    jobs: (await q("select count(*)::int as n from graphile_worker.jobs"))[0].n,
  };
}

/** task_counts (with the unfolded deltas) against a count of the table. */
async function countsAgree() {
  const kept = (await countTaskGroups(db.kysely)).filter((g) => g.count > 0).map((g) => `${g.queue}/${g.type}/${g.status}=${g.count}`).sort();
  const { rows } = await db.pool.query("select queue, type, status::text, count(*)::int as n from tasks group by 1, 2, 3");
  const fresh = rows.map((r) => `${r.queue}/${r.type}/${r.status}=${r.n}`).sort();
  return { kept, fresh };
}

beforeAll(async () => {
  await adminQuery(`create database ${name}`);
  db = openDb({ connectionString: urlForDatabase(name), max: 4 }, logger);
  await migrate(db, logger, migrationsDir, FROM);
  const t0 = performance.now();
  // By id % 100: 5 % queued, 1 % retrying, 2 % running, 1 % paused while waiting, 1 % paused
  // mid-attempt, 2 % failed, 1 % cancelled, the rest succeeded.
  await db.pool.query(
    `insert into tasks (name, type, status, parameters, attempts, max_attempts, timeout_ms, queue, run_at, result, last_error,
       worker_id, heartbeat_at, started_at, finished_at, paused_from, paused_at, created_at, updated_at)
     select 'fill-' || g, case when g % 3 = 0 then 'shell' else 'noop' end, st, jsonb_build_object('sleep_ms', g % 1000),
       case when st = 'queued' or pf = 'queued' then 0 else 1 end, 3, 60000,
       case when g % 7 = 0 then 'other' else 'default' end,
       now() - interval '1 hour',
       case when st = 'succeeded' then jsonb_build_object('n', g) end,
       case when st in ('failed', 'retrying') then 'planned failure' end,
       case when st = 'running' or pf = 'running' then 'w-' || (g % 4) end,
       case when st = 'running' or pf = 'running' then now() end,
       case when st in ('running', 'succeeded', 'failed') or pf = 'running' then now() - interval '1 minute' end,
       case when st in ('succeeded', 'failed', 'cancelled') then now() - interval '30 seconds' end,
       pf, case when st = 'paused' then now() - interval '10 seconds' end,
       now() - interval '1 hour' + g * interval '10 milliseconds', now()
     from (select g,
             (case when g % 100 < 5 then 'queued' when g % 100 = 5 then 'retrying' when g % 100 in (6, 7) then 'running'
                   when g % 100 in (8, 9) then 'paused' when g % 100 in (10, 11) then 'failed' when g % 100 = 12 then 'cancelled'
                   else 'succeeded' end)::task_status as st,
             (case g % 100 when 8 then 'queued' when 9 then 'running' end)::task_status as pf
           from generate_series(1, $1::int) g) s`,
    [TASKS],
  );
  // History: created; the attempt's start; where the task is now (if elsewhere than running).
  await db.pool.query(
    `insert into task_history (task_id, status, attempt, details, created_at)
     select t.id, h.status, h.attempt, h.details, t.created_at from tasks t
     cross join lateral (values ('queued'::task_status, 0, 'created', true),
                                ('running'::task_status, 1, 'attempt 1 started', t.attempts > 0),
                                (t.status, t.attempts, 'now ' || t.status, t.status not in ('queued', 'running'))) as h(status, attempt, details, present)
     where h.present order by t.id`,
  );
  // The next attempt's job of every waiting task (paused tasks have none), as 0019's code added it
  // (store/jobs.ts addJobsOf now names functions later migrations add, such as labels' sets).
  await sql`select graphile_worker.add_jobs((select array_agg(row(
      ${RUN_TASK_PREFIX}::text || t.queue || ':' || t.type, json_build_object('taskId', t.id::text, 'attempt', t.attempts + 1),
      null::text, t.run_at, ${JOB_MAX_ATTEMPTS}::smallint, ${taskJobKey("t.id")}, (-t.priority)::smallint, array[${queueFlag("")}::text || t.queue]
    )::graphile_worker.job_spec) from tasks t where t.status in ('queued', 'retrying')))`.execute(db.kysely);
  await db.pool.query("vacuum analyze tasks, task_history");
  console.log(`migrate-forward: filled ${TASKS} tasks at ${FROM} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}, 300_000);

afterAll(async () => {
  await db?.close();
  await adminQuery(`drop database if exists ${name} with (force)`);
});

describe(`migrations after ${FROM} on a database of ${TASKS} tasks in every status`, () => {
  it("lose nothing, keep the counts exact, keep running attempts fenced and waiting tasks claimable", async () => {
    expect(later.length).toBeGreaterThan(0);
    const before = await inventory();
    expect(before.byStatus.map((r) => r.status).sort()).toEqual(["cancelled", "failed", "paused", "queued", "retrying", "running", "succeeded"]);
    const countsBefore = await countsAgree();
    expect(countsBefore.kept).toEqual(countsBefore.fresh);

    const t0 = performance.now();
    const { applied } = await migrate(db, logger);
    const seconds = (performance.now() - t0) / 1000;
    console.log(`migrate-forward: ${applied.join(", ")} applied to ${TASKS} tasks in ${seconds.toFixed(2)} s`);
    expect(applied).toEqual(later);

    expect(await inventory()).toEqual(before);
    const countsAfter = await countsAgree();
    expect(countsAfter.kept).toEqual(countsAfter.fresh);
    expect(countsAfter.fresh).toEqual(countsBefore.fresh);

    // Fencing: each worker renews its own attempts, running and paused mid-attempt; another
    // worker's heartbeat renews nothing.
    const { rows: inAttempt } = await db.pool.query<{ id: string; attempts: number; worker_id: string; heartbeat_at: Date }>(
      "select id, attempts, worker_id, heartbeat_at from tasks where status = 'running' or (status = 'paused' and worker_id is not null) order by id",
    );
    expect(inAttempt.length).toBe(TASKS * 0.03);
    const stale = inAttempt[0]!;
    const owned = (w: string) => inAttempt.filter((t) => t.worker_id === w && t.id !== stale.id).map((t): AttemptRef => ({ taskId: String(t.id), attempt: t.attempts }));
    const foreign: AttemptRef = { taskId: String(stale.id), attempt: stale.attempts };
    const intruder = WORKERS.find((w) => w !== stale.worker_id)!;
    expect(await heartbeat(db.kysely, intruder, [], [foreign])).toEqual([]);
    const { rows: untouched } = await db.pool.query("select heartbeat_at from tasks where id = $1", [stale.id]);
    expect(untouched[0].heartbeat_at).toEqual(stale.heartbeat_at);
    await sleep(5);
    expect((await heartbeat(db.kysely, stale.worker_id, [], [foreign])).map((a) => a.taskId)).toEqual([String(stale.id)]);
    const { rows: renewed } = await db.pool.query("select heartbeat_at from tasks where id = $1", [stale.id]);
    expect(renewed[0].heartbeat_at.getTime()).toBeGreaterThan(stale.heartbeat_at.getTime());

    // A stale attempt is rescued by the reconciler's statement, and only it: the others were just
    // renewed by their owners. (A lease is counted from PostgreSQL's start at the earliest.)
    const leaseMs = 10_000;
    const { rows: up } = await db.pool.query("select extract(epoch from now() - pg_postmaster_start_time()) * 1000 as ms");
    if (Number(up[0].ms) < leaseMs) await sleep(leaseMs - Number(up[0].ms) + 100);
    for (const w of WORKERS) expect((await heartbeat(db.kysely, w, [], owned(w))).length).toBe(owned(w).length);
    await db.pool.query("update tasks set heartbeat_at = now() - interval '1 hour' where id = $1", [stale.id]);
    const rule = { leaseMs, since: new Date(0), exited: [], dead: [] };
    const rescued = await settleLostAttempts(db.kysely, rule, 100);
    expect(rescued.map((t) => [String(t.id), t.worker_id])).toEqual([[String(stale.id), null]]);
    expect(rescued[0]!.status).toBe("retrying");

    // Waiting tasks are still claimed, their jobs taken.
    const claimed = await claimNextAttempts(db, "w-new", { identifiers: ["run:default:noop"], forbiddenFlags: [], limit: 10 });
    expect(claimed).toHaveLength(10);
    expect(claimed.every((t) => t.status === "running" && t.worker_id === "w-new")).toBe(true);
    const counts = await countsAgree();
    expect(counts.kept).toEqual(counts.fresh);
  }, 120_000);

  it("the lease check reads the attempts in progress by index, not the table", async () => {
    const statement = rescueStatement(lostAttempts({ leaseMs: 15_000, since: new Date(0), exited: [], dead: ["w-gone"] }, 100)).compile(db.kysely);
    const client = await db.pool.connect();
    try {
      await client.query("begin");
      const { rows } = await client.query(`explain (analyze, buffers, format json) ${statement.sql}`, statement.parameters as unknown[]);
      await client.query("rollback");
      interface Node {
        "Node Type": string;
        "Relation Name"?: string;
        "Index Name"?: string;
        Plans?: Node[];
      }
      const nodes: Node[] = [];
      const walk = (n: Node) => {
        nodes.push(n);
        n.Plans?.forEach(walk);
      };
      const explained = (rows[0]["QUERY PLAN"] as Array<{ Plan: Node & { "Shared Hit Blocks"?: number }; "Execution Time": number }>)[0]!;
      walk(explained.Plan);
      console.log(`migrate-forward: lease check over ${TASKS} tasks: ${explained["Execution Time"].toFixed(1)} ms, ${explained.Plan["Shared Hit Blocks"] ?? 0} blocks, indexes ${nodes.flatMap((n) => n["Index Name"] ?? []).join(", ")}`);
      expect(nodes.filter((n) => n["Node Type"] === "Seq Scan" && n["Relation Name"] === "tasks")).toEqual([]);
      expect(nodes.map((n) => n["Index Name"])).toContain("tasks_in_attempt_idx");
    } finally {
      client.release();
    }
  });
});
