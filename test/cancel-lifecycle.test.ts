import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { cancelTasks, claimAttempt, recordOutcome, retryTasks } from "../src/store/lifecycle/index.js";
import { insertTasks } from "../src/store/tasks.js";
import { startTestApiWithWorkers, type TestApiWithWorkers } from "./helpers/api.js";
import { createTask, jobOf, taskRow } from "./helpers/factory.js";
import { waitFor } from "./helpers/wait.js";

let api: TestApiWithWorkers;
beforeAll(async () => {
  api = await startTestApiWithWorkers();
});
afterAll(() => api?.close());

const db = () => api.database.db.kysely;

async function waitForStatus(id: bigint, status: TaskStatus) {
  return waitFor(async () => {
    const { task } = await api.client.getTask({ id });
    return task?.status === status && task;
  }, `task ${id} ${TaskStatus[status]}`);
}

describe("cancel and retry", () => {
  it("a retry forgets the earlier cancel reason: a later cancel without a reason quotes none", async () => {
    // Scheduled an hour ahead, so it waits until the retry puts it back in the queue for now.
    const task = await createTask(api.client, { parameters: { sleep_ms: 30_000 }, runAt: timestampFromDate(new Date(Date.now() + 3_600_000)) });
    await api.client.cancelTask({ id: task.id, reason: "first" });
    await api.client.retryTask({ id: task.id });
    await waitForStatus(task.id, TaskStatus.RUNNING);
    await api.client.cancelTask({ id: task.id });
    await waitForStatus(task.id, TaskStatus.CANCELLED);
    const { history } = await api.client.getTaskHistory({ id: task.id });
    expect(history.at(-1)!.details).toBe("attempt 1 cancelled by request while running");

    // The row as the retry wrote it (a test worker may claim the task at once).
    const [row] = await retryTasks(db(), [String(task.id)], "retried by hand");
    expect({ cancel_reason: row?.cancel_reason, cancel_requested_at: row?.cancel_requested_at }).toEqual({ cancel_reason: null, cancel_requested_at: null });
    await api.client.cancelTask({ id: task.id });
  });

  it("a cancel that lands while an attempt fails records CANCELLED at once instead of RETRYING", async () => {
    const [task] = await insertTasks(api.database.db, [
      { name: "racing", type: "noop", parameters: {}, priority: 0, maxAttempts: 3, timeoutMs: 60_000, runAt: new Date(Date.now() + 3_600_000), idempotencyKey: null, requestHash: null },
    ]);
    // Claimed by a worker of our own (not the test workers: the job is an hour away).
    const claimed = await claimAttempt(api.database.db, task!.id, 1, "racer");
    expect(claimed?.status).toBe("running");
    await cancelTasks(db(), [task!.id], { details: "cancelled by ci (operator)", reason: "no longer needed" });
    const recorded = await recordOutcome(api.database.db, task!.id, 1, "racer", {
      kind: "retrying", error: "boom", retryAt: new Date(Date.now() + 500), details: "attempt 1 failed: boom; retrying in 500ms",
    });
    expect(recorded?.status).toBe("cancelled");
    expect(recorded?.finished_at).not.toBeNull();
    const { history } = await api.client.getTaskHistory({ id: BigInt(task!.id) });
    expect(history.at(-1)).toMatchObject({
      status: TaskStatus.CANCELLED,
      attempt: 1,
      details: "attempt 1 failed: boom; not retried: cancelled by request: no longer needed",
    });
    // No job for attempt 2 was enqueued (the claim took attempt 1's).
    expect(await jobOf(db(), task!.id)).toBeUndefined();
  });

  it("a cancel that races a RUNNING -> RETRYING transition cancels the task instead of failing", async () => {
    const [task] = await insertTasks(api.database.db, [
      { name: "moving", type: "noop", parameters: {}, priority: 0, maxAttempts: 3, timeoutMs: 60_000, runAt: new Date(Date.now() + 3_600_000), idempotencyKey: null, requestHash: null },
    ]);
    await claimAttempt(api.database.db, task!.id, 1, "racer");
    // Hold the row, as a worker recording its outcome does, while the cancel arrives.
    const worker = new pg.Client({ connectionString: api.database.url });
    await worker.connect();
    try {
      await worker.query("begin");
      await worker.query("select 1 from tasks where id = $1 for update", [task!.id]);
      const cancelled = api.client.cancelTask({ id: BigInt(task!.id), reason: "racing" });
      // The cancel's "request a running task's cancellation" statement waits for the row. Asked on
      // another connection: inside the worker's transaction, pg_stat_activity is read once and kept,
      // so a first look taken before the cancel arrived would be all it ever saw.
      await waitFor(async () => {
        const { rows } = await api.database.db.pool.query(
          "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like '%cancel_requested_at%'",
        );
        return rows[0].n > 0;
      }, "the cancel to wait for the row lock");
      await worker.query("update tasks set status = 'retrying', worker_id = null where id = $1", [task!.id]);
      await worker.query("commit");
      const { task: after } = await cancelled;
      expect(after?.status).toBe(TaskStatus.CANCELLED);
      expect((await api.client.getTaskHistory({ id: BigInt(task!.id) })).history.at(-1)?.details).toBe("cancelled by local (admin): racing");
    } finally {
      await worker.end();
    }
  });

  it("a cancel that meets a claim in the opposite lock order is repeated, not answered Internal", async () => {
    // Scheduled an hour ahead, so no test worker claims it: the "claim" is ours.
    const task = await createTask(api.client, { runAt: timestampFromDate(new Date(Date.now() + 3_600_000)) });
    const claim = new pg.Client({ connectionString: api.database.url });
    await claim.connect();
    try {
      // A worker's claim locks the job first, then the task (store/lifecycle claimNextAttempts).
      await claim.query("begin");
      await claim.query("select 1 from graphile_worker._private_jobs where key = $1 for update", [`task:${task.id}`]);
      // The cancel locks the task, then waits to remove the job.
      const cancelled = api.client.cancelTask({ id: task.id, reason: "deadlocked" });
      await waitFor(async () => {
        const { rows } = await api.database.db.pool.query(
          "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like '%remove_job%'",
        );
        return rows[0].n > 0;
      }, "the cancel to wait for the job's lock");
      // The claim now wants the task: PostgreSQL finds the deadlock and aborts one of the two.
      await claim.query("update tasks set priority = priority where id = $1", [String(task.id)]).catch(() => undefined);
      await claim.query("rollback");
      const { task: after } = await cancelled;
      expect(after?.status).toBe(TaskStatus.CANCELLED);
      expect((await api.client.getTaskHistory({ id: task.id })).history.at(-1)?.details).toBe("cancelled by local (admin): deadlocked");
    } finally {
      await claim.end();
    }
  });
});
