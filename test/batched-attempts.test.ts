import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { claimAttempt, claimNextAttempts, recordOutcomes } from "../src/store/lifecycle/index.js";
import { startInMemoryApi, type InMemoryApi } from "./helpers/api.js";

// The worker's batched outcome statement (outcomes written behind): each row keeps its own guard
// and history row, whatever else is in the batch.
let api: InMemoryApi;
beforeAll(async () => {
  api = await startInMemoryApi();
});
afterAll(async () => api?.close());

async function newTasks(n: number, queue?: string): Promise<string[]> {
  const { tasks } = await api.client.createTasks({ tasks: Array.from({ length: n }, (_, i) => ({ name: `batched-${i}`, type: "noop", queue })) });
  return tasks.map((t) => String(t.id));
}

/** The graphile-worker job waiting for each task (its id), as the worker would fetch it. */
async function jobsOf(ids: string[]): Promise<string[]> {
  const { rows } = await api.database.db.pool.query("select id::text from graphile_worker._private_jobs where key = any($1::text[]) order by key", [ids.map((id) => `task:${id}`)]);
  return rows.map((r) => r.id);
}

const context = { identifiers: ["run:default:noop", "run:limited:noop", "run:held:noop"], forbiddenFlags: [] };

async function historyOf(id: string) {
  const { rows } = await api.database.db.pool.query("select status::text, attempt from task_history where task_id = $1 order by id", [id]);
  return rows;
}

describe("batched outcomes", () => {
  it("an outcome batch records each owned attempt once with its history row; an attempt settled by someone else records nothing", async () => {
    const db = api.database.db;
    const [a, b, c] = await newTasks(3);
    for (const [i, taskId] of [a!, b!, c!].entries()) expect(await claimAttempt(db, taskId, 1, "w2")).toBeDefined();
    const recorded = await recordOutcomes(db, [
      { taskId: a!, attempt: 1, workerId: "w2", outcome: { kind: "succeeded", result: { ok: 1 }, details: "attempt 1 succeeded" } },
      { taskId: b!, attempt: 1, workerId: "someone-else", outcome: { kind: "succeeded", result: {}, details: "attempt 1 succeeded" } },
      { taskId: c!, attempt: 1, workerId: "w2", outcome: { kind: "retrying", error: "boom", retryAt: new Date(Date.now() + 60_000), details: "attempt 1 failed: boom; retrying in 1m" } },
    ]);
    expect(recorded.map((row) => row?.status)).toEqual(["succeeded", undefined, "retrying"]);
    expect(recorded[0]!.result).toEqual({ ok: 1 });
    expect(await historyOf(a!)).toEqual([{ status: "queued", attempt: 0 }, { status: "running", attempt: 1 }, { status: "succeeded", attempt: 1 }]);
    expect(await historyOf(b!)).toEqual([{ status: "queued", attempt: 0 }, { status: "running", attempt: 1 }]);
    // The retry got its next job, due at its retry time.
    const { rows } = await db.pool.query("select payload->>'attempt' as attempt from graphile_worker._private_jobs where key = $1", [`task:${c}`]);
    expect(rows).toEqual([{ attempt: "2" }]);
    // The same outcome again (a redelivery) records nothing.
    const again = await recordOutcomes(db, [{ taskId: a!, attempt: 1, workerId: "w2", outcome: { kind: "succeeded", result: {}, details: "attempt 1 succeeded" } }]);
    expect(again).toEqual([undefined]);
  });

  it("an outcome batch adds jobs (and wakes workers) only when it has a retry: one without sends no jobs:insert", async () => {
    const db = api.database.db;
    const listener = await db.pool.connect();
    const heard: string[] = [];
    listener.on("notification", (n) => n.channel === "jobs:insert" && heard.push(n.payload ?? ""));
    try {
      await listener.query('listen "jobs:insert"');
      // A queue of its own: the retry's job stays pending and must not reach the other tests' claims.
      const [a, b] = await newTasks(2, "notify-only");
      for (const taskId of [a!, b!]) expect(await claimAttempt(db, taskId, 1, "w3")).toBeDefined();
      // Notifications of the creates above arrive before this round trip returns.
      await listener.query("select 1");
      heard.length = 0;
      await recordOutcomes(db, [{ taskId: a!, attempt: 1, workerId: "w3", outcome: { kind: "succeeded", result: {}, details: "attempt 1 succeeded" } }]);
      await listener.query("select 1");
      expect(heard).toEqual([]);
      await recordOutcomes(db, [{ taskId: b!, attempt: 1, workerId: "w3", outcome: { kind: "retrying", error: "boom", retryAt: new Date(), details: "attempt 1 failed: boom; retrying now" } }]);
      await listener.query("select 1");
      expect(heard).toHaveLength(1);
    } finally {
      await listener.query('unlisten "jobs:insert"').catch(() => {});
      listener.release();
    }
  });

  it("a claim statement takes the best waiting jobs, starts each attempt once with its history row and deletes the job; stale, duplicate and foreign jobs start nothing", async () => {
    const db = api.database.db;
    const next = (limit: number) => claimNextAttempts(db, "w1", { identifiers: ["run:claims:noop"], forbiddenFlags: [], limit });
    const { tasks } = await api.client.createTasks({ tasks: [0, 5].map((priority) => ({ name: `p${priority}`, type: "noop", queue: "claims", priority })) });
    const [low, high] = tasks.map((t) => String(t.id));
    // The best job first: one slot free, the higher priority starts.
    const first = await next(1);
    expect(first.map((row) => [row.id, row.status, row.worker_id])).toEqual([[high, "running", "w1"]]);
    expect(await historyOf(high!)).toEqual([{ status: "queued", attempt: 0 }, { status: "running", attempt: 1 }]);
    expect(await jobsOf([low!, high!])).toHaveLength(1);
    // A stale job (high's attempt 1 again), a duplicate of low's attempt and a payload we never wrote.
    const add = (payload: unknown) => db.pool.query("select (graphile_worker.add_job('run:claims:noop', $1::json)).id::text", [JSON.stringify(payload)]);
    await add({ taskId: high, attempt: 1 });
    const { rows: [duplicate] } = await add({ taskId: low, attempt: 1 });
    await add({ foreign: true });
    const second = await next(10);
    expect(second.map((row) => row.id)).toEqual([low]);
    expect(await historyOf(low!)).toEqual([{ status: "queued", attempt: 0 }, { status: "running", attempt: 1 }]);
    // The stale and foreign jobs are gone; the duplicate still looked claimable within the statement, and goes with the next one.
    const left = async () => (await db.pool.query("select j.id::text from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id where t.identifier = 'run:claims:noop'")).rows.map((r) => r.id);
    expect(await left()).toEqual([duplicate.id]);
    expect(await next(10)).toEqual([]);
    expect(await left()).toEqual([]);
    expect(await historyOf(low!)).toHaveLength(2);
  });

  it("concurrent claim statements never start one attempt twice", async () => {
    const db = api.database.db;
    await api.client.createTasks({ tasks: Array.from({ length: 60 }, (_, i) => ({ name: `race-${i}`, type: "noop", queue: "race" })) });
    const claims = await Promise.all([1, 2, 3, 4, 5].map((w) => claimNextAttempts(db, `w${w}`, { identifiers: ["run:race:noop"], forbiddenFlags: [], limit: 20 })));
    const more = await claimNextAttempts(db, "w6", { identifiers: ["run:race:noop"], forbiddenFlags: [], limit: 100 });
    const ids = [...claims.flat(), ...more].map((row) => row.id);
    expect(ids).toHaveLength(60);
    expect(new Set(ids).size).toBe(60);
    const { rows } = await db.pool.query("select count(*)::int as n from task_history h join tasks t on t.id = h.task_id where t.queue = 'race' and h.status = 'running'");
    expect(rows[0].n).toBe(60);
  });

  it("a claim batch refuses tasks of a limited or paused queue; a limited claim admits one per statement up to the limit", async () => {
    const db = api.database.db;
    await db.pool.query("insert into queues (name, concurrency, paused) values ('limited', 1, false), ('held', null, true)");
    const limited = await newTasks(2, "limited");
    const [held] = await newTasks(1, "held");
    // Even when asked for (a worker whose view of the queues is stale), the batch starts none of them.
    expect(await claimNextAttempts(db, "w1", { ...context, limit: 10 })).toEqual([]);
    expect(await jobsOf([...limited, held!])).toHaveLength(3);
    const one = (queue: string) => claimNextAttempts(db, "w1", { identifiers: [`run:${queue}:noop`], forbiddenFlags: [], limit: 10, limitedQueue: queue });
    const [started] = await one("limited");
    expect(started?.status).toBe("running");
    // The limit of 1 is reached: the second waits, and keeps its job.
    expect(await one("limited")).toEqual([]);
    expect(await one("held")).toEqual([]);
    expect(await jobsOf([...limited, held!])).toHaveLength(2);
  });
});
