import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { claimNextAttempts } from "../src/store/lifecycle/index.js";
import { openDb } from "../src/store/db.js";
import { createTestDatabase, type TestDatabase } from "./helpers/database.js";

/**
 * Fetches that take only some task identifiers read only those identifiers' jobs, however many
 * others wait (migration 0018): graphile-worker's fetch of the cron jobs, at every poll and every
 * jobs:insert notification in every worker process, and the claim of a worker whose queues are
 * empty while another queue has a backlog.
 */

const WAITING = 20_000;
let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
  await database.db.pool.query(
    `select graphile_worker.add_jobs(array_agg(row('run:backlog:noop', json_build_object('taskId', g::text, 'attempt', 1), null, null, null, null, null, null)::graphile_worker.job_spec))
     from generate_series(1, $1::int) g`,
    [WAITING],
  );
  await database.db.pool.query("select graphile_worker.add_job('task_reconcile', '{}'::json, run_at => now() + interval '1 hour')");
  await database.db.pool.query("vacuum analyze graphile_worker._private_jobs");
}, 120_000);
afterAll(async () => database?.drop());

interface PlanNode {
  "Index Name"?: string;
  "Shared Hit Blocks"?: number;
  "Shared Read Blocks"?: number;
  Plans?: PlanNode[];
}

async function explain(text: string, values: unknown[], on: TestDatabase = database) {
  const { rows } = await on.db.pool.query(`explain (analyze, buffers, format json) ${text}`, values);
  const plan = (rows[0]["QUERY PLAN"] as Array<{ Plan: PlanNode }>)[0]!.Plan;
  const indexes: string[] = [];
  const walk = (n: PlanNode) => {
    if (n["Index Name"]) indexes.push(n["Index Name"]);
    n.Plans?.forEach(walk);
  };
  walk(plan);
  return { indexes, blocks: (plan["Shared Hit Blocks"] ?? 0) + (plan["Shared Read Blocks"] ?? 0) };
}

describe("fetches by task identifier", () => {
  it(`graphile-worker's fetch of the cron jobs reads the index by task id, not the ${WAITING} waiting task jobs`, async () => {
    const { rows } = await database.db.pool.query("select array_agg(id) as ids from graphile_worker._private_tasks where identifier = 'task_reconcile'");
    // graphile-worker 0.17's get_jobs (sql/getJobs.ts), its filter and order.
    const plan = await explain(
      `select id from graphile_worker._private_jobs as jobs
       where jobs.is_available = true and run_at <= now() and task_id = any($1::int[])
       order by priority asc, run_at asc limit 1 for update skip locked`,
      [rows[0].ids],
    );
    expect(plan.indexes).toContain("task_service_jobs_by_task_id");
    expect(plan.blocks).toBeLessThan(20);
  });

  it("a worker whose queues are empty claims nothing and reads only its identifiers' jobs", async () => {
    await database.db.pool.query("select graphile_worker.add_job('run:empty:noop', '{}'::json, run_at => now() + interval '1 hour')");
    await database.db.pool.query("analyze graphile_worker._private_jobs");
    expect(await claimNextAttempts(database.db, "w1", { identifiers: ["run:empty:noop"], forbiddenFlags: [], limit: 10 })).toEqual([]);
    const { rows } = await database.db.pool.query("select array_agg(id) as ids from graphile_worker._private_tasks where identifier = 'run:empty:noop'");
    const plan = await explain(
      `select j.id from graphile_worker._private_jobs j
       where j.is_available = true and j.run_at <= now() and j.task_id = any($1::int[])
       order by j.priority, j.run_at limit 10 for update of j skip locked`,
      [rows[0].ids],
    );
    expect(plan.indexes).toContain("task_service_jobs_by_task_id");
    expect(plan.blocks).toBeLessThan(20);
  });

  it("the claim statement keeps one plan per limit instead of planning at every call", async () => {
    // One connection, so pg_prepared_statements (per session) sees every call.
    const db = openDb({ connectionString: database.url, max: 1 }, database.logger);
    try {
      // Tasks of the backlog's identifier do not exist, so each call drops the jobs it picks: fresh
      // jobs per call keep the statement picking real rows.
      for (let call = 0; call < 12; call++) {
        await claimNextAttempts(db, "w-plans", { identifiers: ["run:backlog:noop"], forbiddenFlags: [], limit: 10 });
      }
      const { rows } = await db.pool.query("select name, generic_plans::int, custom_plans::int from pg_prepared_statements where name like 'task_claim_next%'");
      // PostgreSQL plans a prepared statement for its first five calls' values, then keeps a generic
      // plan unless that looks costlier: a parameter LIMIT made it look so, and every call re-planned.
      expect(rows).toEqual([{ name: "task_claim_next_10", generic_plans: 7, custom_plans: 5 }]);
    } finally {
      await db.close();
    }
  });

  it("so does a labeled worker's, which also reads its labeled identifiers' jobs (routing by labels)", async () => {
    const db = openDb({ connectionString: database.url, max: 1 }, database.logger);
    try {
      const labeled = { labels: ["region=eu"], labeledPrefixes: ["run:backlog:noop:on:"] };
      for (let call = 0; call < 12; call++) {
        await claimNextAttempts(db, "w-plans-l", { identifiers: ["run:backlog:noop"], forbiddenFlags: [], limit: 10, ...labeled });
      }
      const { rows } = await db.pool.query("select name, generic_plans::int, custom_plans::int from pg_prepared_statements where name like 'task_claim_next%'");
      expect(rows).toEqual([{ name: "task_claim_next_10_l", generic_plans: 7, custom_plans: 5 }]);
    } finally {
      await db.close();
    }
  });
});

describe("the claim's pick under stale statistics (migration 0035)", () => {
  // graphile-worker's jobs table fills and empties; autovacuum may analyze it nearly empty. With
  // such statistics the planner once read and sorted an identifier's whole backlog to take 5 jobs.
  let stale: TestDatabase;
  beforeAll(async () => {
    stale = await createTestDatabase();
    await stale.db.pool.query("vacuum analyze graphile_worker._private_jobs");
    await stale.db.pool.query(
      `select graphile_worker.add_jobs(array_agg(row('run:stale:noop', json_build_object('taskId', g::text, 'attempt', 1), null, null, null, null, null, null)::graphile_worker.job_spec))
       from generate_series(1, $1::int) g`,
      [WAITING],
    );
  }, 120_000);
  afterAll(async () => stale?.drop());

  it(`takes 5 of ${WAITING} jobs reading a few index pages, not the backlog`, async () => {
    const { rows } = await stale.db.pool.query("select array_agg(id) as ids from graphile_worker._private_tasks where identifier = 'run:stale:noop'");
    // One connection, called once first: its first call reads the catalogs to plan the function.
    const client = await stale.db.pool.connect();
    let plan;
    try {
      await client.query("select * from task_pick_jobs($1::int[], '{}', 5)", [rows[0].ids]);
      plan = (await client.query("explain (analyze, buffers, format json) select * from task_pick_jobs($1::int[], '{}', 5)", [rows[0].ids])).rows;
    } finally {
      client.release();
    }
    const top = (plan[0]["QUERY PLAN"] as Array<{ Plan: PlanNode & { "Actual Rows": number } }>)[0]!.Plan;
    expect(top["Actual Rows"]).toBe(5);
    expect((top["Shared Hit Blocks"] ?? 0) + (top["Shared Read Blocks"] ?? 0)).toBeLessThan(50);
    // The same pick written as one statement (what the claim was before 0035): with these
    // statistics the planner reads every job of the identifier.
    const before = await explain(
      `select j.id from graphile_worker._private_jobs j
       where j.is_available = true and j.run_at <= now() and j.task_id = any($1::int[])
       order by j.priority, j.run_at limit 5 for update of j skip locked`,
      [rows[0].ids],
      stale,
    );
    console.log(`pick of 5 under stale statistics: ${(top["Shared Hit Blocks"] ?? 0) + (top["Shared Read Blocks"] ?? 0)} blocks with task_pick_jobs, ${before.blocks} as one statement`);
  });
});
