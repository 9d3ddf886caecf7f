import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { reconcile } from "../src/worker/reconcile.js";
import { startInMemoryApi, type InMemoryApi } from "./helpers/api.js";
import { createTask, expectConnectError, jobOf, setTaskRow, taskRow } from "./helpers/factory.js";

let api: InMemoryApi;
beforeAll(async () => {
  api = await startInMemoryApi();
});
afterAll(async () => api?.close());

const db = () => api.database.db.kysely;

describe("GetTask and GetTaskHistory", () => {
  it("answers NotFound for a missing id and InvalidArgument for a non-positive one", async () => {
    await expectConnectError(api.client.getTask({ id: 999_999n }), Code.NotFound, "999999");
    await expectConnectError(api.client.getTask({ id: 0n }), Code.InvalidArgument, "id");
    await expectConnectError(api.client.getTask({ id: -4n }), Code.InvalidArgument, "id");
    await expectConnectError(api.client.getTaskHistory({ id: 999_999n }), Code.NotFound, "999999");
    await expectConnectError(api.client.getTaskHistory({ id: 0n }), Code.InvalidArgument, "id");
  });

  it("starts the history with a created row at attempt 0", async () => {
    const task = await createTask(api.client);
    const { history } = await api.client.getTaskHistory({ id: task.id });
    expect(history).toHaveLength(1);
    expect(history[0]).toMatchObject({ taskId: task.id, status: TaskStatus.QUEUED, attempt: 0, details: "created" });
    expect(history[0]!.id).toBeGreaterThan(0n);
    expect(history[0]!.createdAt).toBeDefined();
  });
});

describe("GetTaskStatusCounts", () => {
  it("counts every status in enum order, zeros included", async () => {
    const before = await api.client.getTaskStatusCounts({});
    const statuses = [TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.RETRYING, TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.PAUSED, TaskStatus.EXPIRED];
    expect(before.counts.map((c) => c.status)).toEqual(statuses);

    await createTask(api.client);
    const cancelled = await createTask(api.client);
    const failed = await createTask(api.client);
    await api.client.cancelTask({ id: cancelled.id });
    await setTaskRow(db(), failed.id, "failed");
    const after = await api.client.getTaskStatusCounts({});
    expect(after.counts.map((c) => c.status)).toEqual(statuses);
    const delta = after.counts.map((c, i) => Number(c.count - before.counts[i]!.count));
    expect(delta).toEqual([1, 0, 0, 0, 1, 1, 0, 0]);
    expect(after.total).toBe(before.total + 3n);
    expect(after.total).toBe(after.counts.reduce((sum, c) => sum + c.count, 0n));
  });
});

describe("CancelTask", () => {
  it("cancels a queued task: finished_at, history with the reason, job removed", async () => {
    const task = await createTask(api.client);
    expect(await jobOf(db(), task.id)).toBeDefined();
    const { task: cancelled } = await api.client.cancelTask({ id: task.id, reason: "  no longer needed " });
    expect(cancelled).toMatchObject({ id: task.id, status: TaskStatus.CANCELLED });
    expect(cancelled!.finishedAt).toBeDefined();
    expect(timestampDate(cancelled!.finishedAt!).getTime()).toBeGreaterThanOrEqual(timestampDate(task.createdAt!).getTime());
    const { history } = await api.client.getTaskHistory({ id: task.id });
    expect(history.map((h) => [h.status, h.details])).toEqual([
      [TaskStatus.QUEUED, "created"],
      [TaskStatus.CANCELLED, "cancelled by local (admin): no longer needed"],
    ]);
    expect(await jobOf(db(), task.id)).toBeUndefined();
    expect((await api.client.getTask({ id: task.id })).task?.status).toBe(TaskStatus.CANCELLED);
  });

  it("cancels a retrying task too", async () => {
    const task = await createTask(api.client);
    await setTaskRow(db(), task.id, "retrying", { attempts: 1, last_error: "boom" });
    const { task: cancelled } = await api.client.cancelTask({ id: task.id });
    expect(cancelled?.status).toBe(TaskStatus.CANCELLED);
    const { history } = await api.client.getTaskHistory({ id: task.id });
    expect(history.at(-1)).toMatchObject({ status: TaskStatus.CANCELLED, attempt: 1, details: "cancelled by local (admin)" });
    expect(await jobOf(db(), task.id)).toBeUndefined();
  });

  it("refuses to cancel a finished task, writing nothing", async () => {
    const task = await createTask(api.client);
    await api.client.cancelTask({ id: task.id });
    await expectConnectError(api.client.cancelTask({ id: task.id }), Code.FailedPrecondition, "cancelled");
    const succeeded = await createTask(api.client);
    await setTaskRow(db(), succeeded.id, "succeeded");
    await expectConnectError(api.client.cancelTask({ id: succeeded.id }), Code.FailedPrecondition, "succeeded");
    expect((await api.client.getTaskHistory({ id: task.id })).history).toHaveLength(2);
    expect((await api.client.getTaskHistory({ id: succeeded.id })).history).toHaveLength(1);
  });

  it("asks the worker to stop a running task and leaves it RUNNING", async () => {
    const task = await createTask(api.client);
    await setTaskRow(db(), task.id, "running", { attempts: 1, started_at: new Date() });
    expect((await taskRow(db(), task.id)).cancel_requested_at).toBeNull();
    const { task: after } = await api.client.cancelTask({ id: task.id, reason: "stop it" });
    expect(after).toMatchObject({ id: task.id, status: TaskStatus.RUNNING });
    expect(after!.finishedAt).toBeUndefined();
    const row = await taskRow(db(), task.id);
    expect(row.status).toBe("running");
    expect(row.cancel_requested_at).toBeInstanceOf(Date);
    // Asking again keeps the first request time.
    await api.client.cancelTask({ id: task.id });
    expect((await taskRow(db(), task.id)).cancel_requested_at).toEqual(row.cancel_requested_at);
  });

  // The proto promises "reason: Recorded in the task's history" for every cancel.
  it("records the reason of a cancel request for a running task", async () => {
    const task = await createTask(api.client);
    await setTaskRow(db(), task.id, "running", { attempts: 1, started_at: new Date() });
    await api.client.cancelTask({ id: task.id, reason: "operator pressed stop" });
    // No worker runs here, so let the reconciler complete the cancel as it would for a dead worker.
    await api.database.db.pool.query("update tasks set heartbeat_at = now() - interval '1 hour' where id = $1", [task.id.toString()]);
    // A short lease: leases count from PostgreSQL's start at the earliest, and it may be recent.
    await reconcile(api.database.db.kysely, 100, api.database.logger);
    const { history } = await api.client.getTaskHistory({ id: task.id });
    expect(history.at(-1)?.status).toBe(TaskStatus.CANCELLED);
    expect(history.at(-1)?.details).toMatch(/cancellation completed: operator pressed stop$/);
  });

  it("answers NotFound and InvalidArgument", async () => {
    await expectConnectError(api.client.cancelTask({ id: 999_999n }), Code.NotFound);
    await expectConnectError(api.client.cancelTask({ id: 0n }), Code.InvalidArgument, "id");
    const task = await createTask(api.client);
    await expectConnectError(api.client.cancelTask({ id: task.id, reason: "r".repeat(501) }), Code.InvalidArgument, "reason");
    expect((await taskRow(db(), task.id)).status).toBe("queued");
  });

  it("rejects a reason PostgreSQL cannot store as InvalidArgument, not Internal", async () => {
    const task = await createTask(api.client);
    await expectConnectError(api.client.cancelTask({ id: task.id, reason: "bad\u0000byte" }), Code.InvalidArgument, "reason");
    expect((await taskRow(db(), task.id)).status).toBe("queued");
  });
});

describe("RetryTask", () => {
  it.each([
    ["cancelled", "was cancelled after 0 attempts"],
    ["failed", "was failed after 3 attempts"],
  ] as const)("puts a %s task back in the queue with a new job", async (status, wording) => {
    const task = await createTask(api.client);
    if (status === "cancelled") {
      await api.client.cancelTask({ id: task.id });
    } else {
      await setTaskRow(db(), task.id, "failed", { attempts: 3, last_error: "exit code 1", started_at: new Date(), finished_at: new Date() });
      // The worker completed (deleted) the job of the last attempt.
      await sql`delete from graphile_worker._private_jobs where key = ${`task:${task.id}`}`.execute(db());
    }
    expect(await jobOf(db(), task.id)).toBeUndefined();

    const { task: retried } = await api.client.retryTask({ id: task.id });
    expect(retried).toMatchObject({ id: task.id, status: TaskStatus.QUEUED, attempts: 0, lastError: "" });
    expect(retried!.finishedAt).toBeUndefined();
    expect(retried!.startedAt).toBeUndefined();
    const row = await taskRow(db(), task.id);
    expect(row).toMatchObject({ status: "queued", attempts: 0, last_error: null, finished_at: null, cancel_requested_at: null });

    const { history } = await api.client.getTaskHistory({ id: task.id });
    const last = history.at(-1)!;
    expect(last).toMatchObject({ status: TaskStatus.QUEUED, attempt: 0 });
    expect(last.details).toMatch(/^manual retry/);
    expect(last.details).toContain(wording);

    const job = await jobOf(db(), task.id);
    expect(job).toMatchObject({ key: `task:${task.id}`, payload: { taskId: String(task.id), attempt: 1 } });
  });

  it("refuses tasks that are not FAILED or CANCELLED", async () => {
    const queued = await createTask(api.client);
    await expectConnectError(api.client.retryTask({ id: queued.id }), Code.FailedPrecondition, "queued");
    const succeeded = await createTask(api.client);
    await setTaskRow(db(), succeeded.id, "succeeded");
    await expectConnectError(api.client.retryTask({ id: succeeded.id }), Code.FailedPrecondition, "succeeded");
    expect((await api.client.getTaskHistory({ id: queued.id })).history).toHaveLength(1);
  });

  it("answers NotFound and InvalidArgument", async () => {
    await expectConnectError(api.client.retryTask({ id: 999_999n }), Code.NotFound, "999999");
    await expectConnectError(api.client.retryTask({ id: -1n }), Code.InvalidArgument, "id");
  });
});

describe("ListTaskTypes", () => {
  const props = (schema: unknown) => Object.keys((schema as { properties?: object }).properties ?? {});

  it("lists each built-in type with its description, schema and defaults", async () => {
    const { types } = await api.client.listTaskTypes({});
    expect(types.map((t) => t.name)).toEqual(["noop", "run_query", "send_email", "shell"]);
    for (const type of types) {
      expect(type.description.length).toBeGreaterThan(10);
      expect(type.parameterSchema).toMatchObject({ type: "object" });
      expect(type.enabled).toBe(true);
      expect(type.defaultMaxAttempts).toBeGreaterThan(0);
      expect(type.defaultTimeout?.seconds).toBeGreaterThan(0n);
    }
    const byName = new Map(types.map((t) => [t.name, t]));
    expect(props(byName.get("shell")!.parameterSchema)).toEqual(expect.arrayContaining(["command", "env", "cwd"]));
    expect(props(byName.get("send_email")!.parameterSchema)).toEqual(expect.arrayContaining(["to", "subject", "body"]));
    expect(props(byName.get("run_query")!.parameterSchema)).toEqual(expect.arrayContaining(["sql", "params", "target", "max_rows"]));
    expect(props(byName.get("noop")!.parameterSchema)).toEqual(expect.arrayContaining(["sleep_ms", "fail"]));
    expect(byName.get("shell")!.parameterSchema).toMatchObject({ required: ["command"], additionalProperties: false });
    expect(byName.get("send_email")).toMatchObject({ defaultMaxAttempts: 5, defaultTimeout: { seconds: 60n } });
  });

  it("marks shell disabled when the server does not enable it", async () => {
    const noShell = await startInMemoryApi({ config: { enableShell: false } });
    try {
      const { types } = await noShell.client.listTaskTypes({});
      expect(types.map((t) => [t.name, t.enabled])).toEqual([
        ["noop", true],
        ["run_query", true],
        ["send_email", true],
        ["shell", false],
      ]);
    } finally {
      await noShell.close();
    }
  });
});
