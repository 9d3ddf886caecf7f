import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { claimAttempts, recordOutcomes } from "../src/store/attempts.js";
import { startTestApi, type TestApi } from "./helpers/api.js";

// The worker's batched statements (claims coalesced per fetch, outcomes written behind): each row
// keeps its own guard and history row, whatever else is in the batch.
let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => api?.close());

async function newTasks(n: number): Promise<string[]> {
  const { tasks } = await api.client.createTasks({ tasks: Array.from({ length: n }, (_, i) => ({ name: `batched-${i}`, type: "noop" })) });
  return tasks.map((t) => String(t.id));
}

async function historyOf(id: string) {
  const { rows } = await api.database.db.pool.query("select status::text, attempt from task_history where task_id = $1 order by id", [id]);
  return rows;
}

describe("batched claims and outcomes", () => {
  it("a claim batch starts each waiting task once; a duplicate job of the same attempt and a stale one get nothing", async () => {
    const db = api.database.db;
    const [a, b, c] = await newTasks(3);
    const claimed = await claimAttempts(db, [
      { taskId: a!, attempt: 1, workerId: "w1", jobId: "101" },
      { taskId: b!, attempt: 1, workerId: "w1", jobId: "102" },
      { taskId: a!, attempt: 1, workerId: "w1", jobId: "103" }, // a duplicate job for the same attempt
      { taskId: c!, attempt: 2, workerId: "w1", jobId: "104" }, // stale: c waits for attempt 1
    ]);

    // Exactly one of the two jobs of a's attempt 1 won, and the row names it.
    expect([claimed[0], claimed[2]].filter((row) => row !== undefined)).toHaveLength(1);
    const won = claimed[0] ?? claimed[2];
    expect(won).toMatchObject({ id: a, status: "running", attempts: 1, worker_id: "w1", job_id: claimed[0] ? "101" : "103" });
    expect(claimed[1]).toMatchObject({ id: b, status: "running", attempts: 1, job_id: "102" });
    expect(claimed[3]).toBeUndefined();
    expect(await historyOf(a!)).toEqual([{ status: "queued", attempt: 0 }, { status: "running", attempt: 1 }]);
    expect(await historyOf(c!)).toEqual([{ status: "queued", attempt: 0 }]);
  });

  it("an outcome batch records each owned attempt once with its history row; an attempt settled by someone else records nothing", async () => {
    const db = api.database.db;
    const [a, b, c] = await newTasks(3);
    await claimAttempts(db, [a!, b!, c!].map((taskId, i) => ({ taskId, attempt: 1, workerId: "w2", jobId: String(200 + i) })));
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
});
