import { create } from "@bufbuild/protobuf";
import { DurationSchema, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { expectConnectError, jobOf, rowCounts, taskRequest, taskRow, type CreateTaskInput } from "./helpers/factory.js";

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => api?.close());

const seconds = (s: number) => create(DurationSchema, { seconds: BigInt(s) });

describe("CreateTask", () => {
  it("fills every field of a new task and stores it", async () => {
    const { task, created } = await api.client.createTask({
      name: "  nightly backup  ",
      type: "shell",
      parameters: { command: "echo hi", env: { GREETING: "hello" } },
      priority: 7,
    });
    expect(created).toBe(true);
    expect(task).toBeDefined();
    const t = task!;
    expect(t.id).toBeGreaterThan(0n);
    expect(t.name).toBe("nightly backup");
    expect(t.type).toBe("shell");
    expect(t.status).toBe(TaskStatus.QUEUED);
    expect(t.parameters).toEqual({ command: "echo hi", env: { GREETING: "hello" } });
    expect(t.priority).toBe(7);
    expect(t.attempts).toBe(0);
    expect(t.maxAttempts).toBe(3); // shell's default
    expect(t.timeout).toMatchObject({ seconds: 300n, nanos: 0 }); // shell's default
    expect(t.lastError).toBe("");
    expect(t.idempotencyKey).toBe("");
    expect(t.result).toBeUndefined();
    expect(t.startedAt).toBeUndefined();
    expect(t.finishedAt).toBeUndefined();
    // Created "now": run_at, created_at and updated_at are the same transaction timestamp.
    expect(t.createdAt).toBeDefined();
    const createdAt = timestampDate(t.createdAt!);
    expect(timestampDate(t.runAt!)).toEqual(createdAt);
    expect(timestampDate(t.updatedAt!)).toEqual(createdAt);

    const row = await taskRow(api.database.db.kysely, t.id);
    expect(row).toMatchObject({ name: "nightly backup", status: "queued", priority: 7, max_attempts: 3, timeout_ms: 300_000, attempts: 0 });
    expect(row.created_at).toEqual(createdAt);

    const got = await api.client.getTask({ id: t.id });
    expect(got.task).toEqual(t);
  });

  it("uses the type's defaults and keeps explicit values", async () => {
    const email = await api.client.createTask(
      taskRequest({ type: "send_email", parameters: { to: "a@example.com", subject: "s", body: "b" } }),
    );
    expect(email.task?.maxAttempts).toBe(5);
    expect(email.task?.timeout?.seconds).toBe(60n);
    // Defaults of the schema are applied to the stored parameters; a single address becomes a list.
    expect(email.task?.parameters).toEqual({ to: ["a@example.com"], subject: "s", body: "b" });

    const noop = await api.client.createTask(taskRequest({ parameters: {}, maxAttempts: 9, timeout: seconds(5) }));
    expect(noop.task?.maxAttempts).toBe(9);
    expect(noop.task?.timeout?.seconds).toBe(5n);
    expect(noop.task?.parameters).toEqual({ sleep_ms: 0 });
  });

  it("accepts values at the limits", async () => {
    const high = await api.client.createTask(taskRequest({ priority: 1000, maxAttempts: 100, timeout: seconds(24 * 3600) }));
    expect(high.task).toMatchObject({ priority: 1000, maxAttempts: 100, timeout: { seconds: 86_400n } });
    const low = await api.client.createTask(taskRequest({ priority: -1000, maxAttempts: 1, timeout: create(DurationSchema, { nanos: 1_000_000 }) }));
    expect(low.task).toMatchObject({ priority: -1000, maxAttempts: 1, timeout: { seconds: 0n, nanos: 1_000_000 } });
    expect(await jobOf(api.database.db.kysely, high.task!.id)).toMatchObject({ priority: -1000 });
    expect(await jobOf(api.database.db.kysely, low.task!.id)).toMatchObject({ priority: 1000 });
  });

  it("accepts the JSON example from the issue over plain HTTP", async () => {
    const res = await fetch(`${api.server.url}/task.v1.TaskService/CreateTask`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "x", type: "shell", parameters: { command: "echo hi" } }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { created: boolean; task: Record<string, unknown> };
    expect(body.created).toBe(true);
    expect(body.task).toMatchObject({ name: "x", type: "shell", status: "TASK_STATUS_QUEUED", parameters: { command: "echo hi" }, maxAttempts: 3, timeout: "300s" });
    expect(body.task.id).toMatch(/^[1-9]\d*$/);
    const stored = await api.client.getTask({ id: BigInt(body.task.id as string) });
    expect(stored.task?.name).toBe("x");
  });

  it.each([
    ["not JSON at all", "{name: x"],
    ["a field of the wrong JSON type", JSON.stringify({ name: 5, type: "noop" })],
  ])("answers %s with invalid_argument over plain HTTP", async (_label, body) => {
    const before = await rowCounts(api.database.db.kysely);
    const res = await fetch(`${api.server.url}/task.v1.TaskService/CreateTask`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: "invalid_argument" });
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
  });

  it("keeps a future run_at and says so in the history", async () => {
    const runAt = new Date(Date.now() + 3_600_000);
    runAt.setUTCMilliseconds(0);
    const { task } = await api.client.createTask(taskRequest({ runAt: timestampFromDate(runAt) }));
    expect(timestampDate(task!.runAt!)).toEqual(runAt);
    expect(timestampDate(task!.createdAt!).getTime()).toBeLessThan(runAt.getTime());

    const { history } = await api.client.getTaskHistory({ id: task!.id });
    expect(history).toHaveLength(1);
    expect(history[0]).toMatchObject({ status: TaskStatus.QUEUED, attempt: 0, taskId: task!.id });
    expect(history[0]!.details).toBe(`created, scheduled for ${runAt.toISOString().replace(".000Z", "Z")}`);

    const job = await jobOf(api.database.db.kysely, task!.id);
    expect(job?.run_at).toEqual(runAt);
  });

  it("enqueues one graphile-worker job per task, keyed by task id, with the priority negated", async () => {
    const low = await api.client.createTask(taskRequest({ priority: -20 }));
    const high = await api.client.createTask(taskRequest({ priority: 500 }));
    for (const { task } of [low, high]) {
      const job = await jobOf(api.database.db.kysely, task!.id);
      expect(job).toMatchObject({ key: `task:${task!.id}`, priority: 0 - task!.priority, payload: { taskId: String(task!.id), attempt: 1 } });
      expect(job!.run_at).toEqual(timestampDate(task!.runAt!));
    }
    const counts = await rowCounts(api.database.db.kysely);
    expect(counts.jobs).toBe(counts.tasks);
    expect(counts.history).toBe(counts.tasks);
  });
});

describe("CreateTask rejects bad input and writes nothing", () => {
  const bad: Array<[string, CreateTaskInput, Code, string | RegExp]> = [
    ["empty name", taskRequest({ name: "" }), Code.InvalidArgument, "name: is required"],
    ["blank name", taskRequest({ name: "   " }), Code.InvalidArgument, "name: is required"],
    ["name over 200 characters", taskRequest({ name: "n".repeat(201) }), Code.InvalidArgument, "name:"],
    ["missing type", taskRequest({ type: "" }), Code.InvalidArgument, "type: is required"],
    ["unknown type", taskRequest({ type: "launch_rocket" }), Code.InvalidArgument, /type: unknown task type "launch_rocket"/],
    ["missing required parameter", taskRequest({ type: "shell", parameters: {} }), Code.InvalidArgument, "parameters.command: is required"],
    ["parameter of the wrong type", taskRequest({ type: "shell", parameters: { command: 42 } }), Code.InvalidArgument, "parameters.command"],
    ["invalid email address", taskRequest({ type: "send_email", parameters: { to: "nobody", subject: "s", body: "b" } }), Code.InvalidArgument, "parameters.to"],
    ["list element invalid", taskRequest({ type: "send_email", parameters: { to: ["a@example.com", "x"], subject: "s", body: "b" } }), Code.InvalidArgument, "parameters.to"],
    ["a DSN as run_query target", taskRequest({ type: "run_query", parameters: { sql: "select 1", target: "postgres://u:p@h/db" } }), Code.InvalidArgument, "parameters.target"],
    ["non-integer sleep_ms", taskRequest({ parameters: { sleep_ms: 1.5 } }), Code.InvalidArgument, "parameters.sleep_ms"],
    ["unknown parameter (strict schema)", taskRequest({ type: "shell", parameters: { command: "true", shell: "zsh" } }), Code.InvalidArgument, /parameters.*shell/],
    ["priority above range", taskRequest({ priority: 1001 }), Code.InvalidArgument, "priority"],
    ["priority below range", taskRequest({ priority: -1001 }), Code.InvalidArgument, "priority"],
    ["max_attempts above range", taskRequest({ maxAttempts: 101 }), Code.InvalidArgument, "max_attempts"],
    ["negative max_attempts", taskRequest({ maxAttempts: -1 }), Code.InvalidArgument, "max_attempts"],
    ["negative timeout", taskRequest({ timeout: seconds(-5) }), Code.InvalidArgument, "timeout"],
    ["zero timeout", taskRequest({ timeout: seconds(0) }), Code.InvalidArgument, "timeout"],
    ["timeout over 24h", taskRequest({ timeout: seconds(24 * 3600 + 1) }), Code.InvalidArgument, "timeout"],
    ["idempotency key over 200 characters", taskRequest({ idempotencyKey: "k".repeat(201) }), Code.InvalidArgument, "idempotency_key"],
    ["parameters over 256 KiB", taskRequest({ type: "shell", parameters: { command: "x".repeat(300_000) } }), Code.InvalidArgument, "parameters"],
  ];

  it.each(bad)("%s", async (_label, request, code, message) => {
    const before = await rowCounts(api.database.db.kysely);
    await expectConnectError(api.client.createTask(request), code, message);
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
  });

  it("reports every cheap violation at once", async () => {
    const err = await expectConnectError(api.client.createTask({ name: "", type: "", priority: 5000, maxAttempts: 1000 }), Code.InvalidArgument);
    for (const field of ["name", "type", "priority", "max_attempts"]) expect(err.rawMessage).toContain(`${field}:`);
  });

  // Bad input must get a clear InvalidArgument, not an internal error from PostgreSQL.
  it.each<[string, CreateTaskInput, string]>([
    ["a NUL character in the name", taskRequest({ name: "a\u0000b" }), "name"],
    ["a NUL character in a parameter", taskRequest({ type: "shell", parameters: { command: "echo \u0000" } }), "parameters.command"],
    ["a NUL character in the idempotency key", taskRequest({ idempotencyKey: "key\u0000" }), "idempotency_key"],
    ["a run_at beyond year 9999", taskRequest({ runAt: timestampFromDate(new Date("+010000-01-01T00:00:00Z")) }), "run_at"],
    ["a run_at before year 1", taskRequest({ runAt: timestampFromDate(new Date("-000001-06-01T00:00:00Z")) }), "run_at"],
  ])("rejects %s as InvalidArgument", async (_label, request, field) => {
    const before = await rowCounts(api.database.db.kysely);
    await expectConnectError(api.client.createTask(request), Code.InvalidArgument, field);
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
  });
});

describe("server limits", () => {
  let noShell: TestApi;
  let small: TestApi;
  beforeAll(async () => {
    [noShell, small] = await Promise.all([startTestApi({ config: { enableShell: false } }), startTestApi({ config: { maxRequestBytes: 2048 } })]);
  });
  afterAll(async () => Promise.all([noShell?.close(), small?.close()]));

  it("refuses shell tasks with FailedPrecondition when shell is disabled", async () => {
    const before = await rowCounts(noShell.database.db.kysely);
    await expectConnectError(noShell.client.createTask(taskRequest({ type: "shell", parameters: { command: "id" } })), Code.FailedPrecondition, /shell.*disabled/);
    expect(await rowCounts(noShell.database.db.kysely)).toEqual(before);
    // Other types still work there.
    await expect(noShell.client.createTask(taskRequest())).resolves.toMatchObject({ created: true });
  });

  it("rejects a request bigger than maxRequestBytes and writes nothing", async () => {
    const before = await rowCounts(small.database.db.kysely);
    const request = taskRequest({ type: "shell", parameters: { command: `echo ${"x".repeat(4096)}` } });
    await expectConnectError(small.client.createTask(request), Code.ResourceExhausted);
    await expectConnectError(small.grpc.createTask(request), Code.ResourceExhausted);
    expect(await rowCounts(small.database.db.kysely)).toEqual(before);
    // A request under the limit is served.
    await expect(small.client.createTask(taskRequest({ type: "shell", parameters: { command: "echo small" } }))).resolves.toMatchObject({ created: true });
  });
});
