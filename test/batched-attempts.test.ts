import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { claimAttempt, recordOutcomes } from "../src/store/attempts.js";
import { startTestApi, type TestApi } from "./helpers/api.js";

// The worker's batched outcome statement (outcomes written behind): each row keeps its own guard
// and history row, whatever else is in the batch.
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
});
