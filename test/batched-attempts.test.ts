import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { claimAttempt, claimAttempts, recordOutcomes } from "../src/store/attempts.js";
import { startTestApi, type TestApi } from "./helpers/api.js";

// The worker's batched outcome statement (outcomes written behind): each row keeps its own guard
// and history row, whatever else is in the batch.
let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
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
    for (const [i, taskId] of [a!, b!, c!].entries()) expect(await claimAttempt(db, taskId, 1, "w2", String(200 + i))).toBeDefined();
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

  it("a claim batch starts each waiting attempt once with its history row and takes over its job; duplicates and stale claims start nothing", async () => {
    const db = api.database.db;
    const [a, b, c] = await newTasks(3);
    const [ja, jb, jc] = await Promise.all([a!, b!, c!].map(async (id) => (await jobsOf([id]))[0]!));
    const claimed = await claimAttempts(db, "w1", [
      { taskId: a!, attempt: 1, jobId: ja!, jobPriority: 0 },
      { taskId: b!, attempt: 1, jobId: jb!, jobPriority: 0 },
      // A duplicate job of b's attempt in the same batch, and a claim of an attempt c is not waiting for.
      { taskId: b!, attempt: 1, jobId: String(Number(jb) + 1_000_000), jobPriority: 0 },
      { taskId: c!, attempt: 2, jobId: jc!, jobPriority: 0 },
    ], context);
    expect(claimed.map((row) => row?.status)).toEqual(["running", "running", undefined, undefined]);
    expect(claimed[1]!.job_id).toBe(jb);
    expect(await historyOf(a!)).toEqual([{ status: "queued", attempt: 0 }, { status: "running", attempt: 1 }]);
    expect(await historyOf(b!)).toEqual([{ status: "queued", attempt: 0 }, { status: "running", attempt: 1 }]);
    expect(await historyOf(c!)).toEqual([{ status: "queued", attempt: 0 }]);
    // The claimed tasks' jobs are gone (graphile-worker's completion then writes nothing); c keeps its job.
    expect(await jobsOf([a!, b!, c!])).toEqual([jc]);
    // Claiming the same attempts again starts nothing.
    expect(await claimAttempts(db, "w2", [{ taskId: a!, attempt: 1, jobId: ja!, jobPriority: 0 }], context)).toEqual([undefined]);
  });

  it("a claim batch refuses tasks of a limited or paused queue (they are claimed one by one, through the queue's gate)", async () => {
    const db = api.database.db;
    await db.pool.query("insert into queues (name, concurrency, paused) values ('limited', 5, false), ('held', null, true)");
    const [limited] = await newTasks(1, "limited");
    const [held] = await newTasks(1, "held");
    const [job] = await jobsOf([limited!]);
    const claims = [limited!, held!].map((taskId) => ({ taskId, attempt: 1, jobId: "1", jobPriority: 0 }));
    expect(await claimAttempts(db, "w1", claims, context)).toEqual([undefined, undefined]);
    expect((await claimAttempt(db, limited!, 1, "w1", job!, { ...context, jobPriority: 0 }))?.status).toBe("running");
    expect(await claimAttempt(db, held!, 1, "w1", "1", { ...context, jobPriority: 0 })).toBeUndefined();
  });
});
