import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInMemoryApi, type InMemoryApi } from "./helpers/api.js";
import { expectConnectError, rowCounts, taskRequest } from "./helpers/factory.js";

let api: InMemoryApi;
beforeAll(async () => {
  api = await startInMemoryApi();
});
afterAll(async () => api?.close());

/** Rows holding this idempotency key, and jobs of those tasks. */
async function rowsForKey(key: string) {
  const db = api.database.db.kysely;
  const tasks = await db.selectFrom("tasks").select("id").where("idempotency_key", "=", key).execute();
  const ids = tasks.map((t) => t.id);
  const history = ids.length ? await db.selectFrom("task_history").select("id").where("task_id", "in", ids).execute() : [];
  return { tasks: ids, history: history.length };
}

describe("CreateTask with an idempotency key", () => {
  it("returns the same task for a repeated request, creating it once", async () => {
    const request = taskRequest({ type: "shell", parameters: { command: "echo once" }, priority: 4, idempotencyKey: "same-twice" });
    const before = await rowCounts(api.database.db.kysely);
    const first = await api.client.createTask(request);
    const second = await api.client.createTask(request);
    expect(first.created).toBe(true);
    expect(second.created).toBe(false);
    expect(second.task?.id).toBe(first.task?.id);
    expect(second.task?.idempotencyKey).toBe("same-twice");
    expect(second.task).toEqual(first.task);
    expect(await rowCounts(api.database.db.kysely)).toEqual({ tasks: before.tasks + 1, history: before.history + 1, jobs: before.jobs + 1 });
    expect(await rowsForKey("same-twice")).toEqual({ tasks: [String(first.task!.id)], history: 1 });
  });

  it("treats a request that only spells defaults differently as the same request", async () => {
    const first = await api.client.createTask(taskRequest({ name: "defaults", idempotencyKey: "defaults-key" }));
    // max_attempts 3 and sleep_ms 0 are noop's defaults, so this asks for exactly the same task.
    const again = await api.client.createTask({ name: " defaults ", type: "noop", parameters: { sleep_ms: 0 }, maxAttempts: 3, idempotencyKey: "defaults-key" });
    expect(again).toMatchObject({ created: false, task: { id: first.task!.id } });
  });

  it.each([
    ["parameters", { parameters: { sleep_ms: 5 } }],
    ["name", { name: "other name" }],
    ["priority", { priority: 1 }],
    ["type", { type: "shell", parameters: { command: "true" } }],
  ])("answers AlreadyExists when the key is reused with a different %s, and writes nothing", async (_label, change) => {
    const key = `conflict-${_label}`;
    const original = taskRequest({ name: "original", idempotencyKey: key });
    const { task } = await api.client.createTask(original);
    const before = await rowCounts(api.database.db.kysely);
    const err = await expectConnectError(api.client.createTask({ ...original, ...change }), Code.AlreadyExists, key);
    expect(err.rawMessage).toContain(String(task!.id));
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
    expect(await rowsForKey(key)).toEqual({ tasks: [String(task!.id)], history: 1 });
  });

  it("creates one task when the same keyed request arrives concurrently", async () => {
    const request = taskRequest({ idempotencyKey: "concurrent-key" });
    const responses = await Promise.all(Array.from({ length: 6 }, () => api.client.createTask(request)));
    expect(new Set(responses.map((r) => r.task!.id)).size).toBe(1);
    expect(responses.filter((r) => r.created)).toHaveLength(1);
    expect((await rowsForKey("concurrent-key")).tasks).toHaveLength(1);
  });
});

describe("CreateTasks with idempotency keys", () => {
  it("mixes keyed and unkeyed tasks, replaying existing keys in place", async () => {
    const existing = await api.client.createTask(taskRequest({ name: "existing", idempotencyKey: "batch-existing" }));
    const before = await rowCounts(api.database.db.kysely);
    const requests = [
      taskRequest({ name: "unkeyed-1" }),
      taskRequest({ name: "existing", idempotencyKey: "batch-existing" }),
      taskRequest({ name: "keyed-new", idempotencyKey: "batch-new" }),
      taskRequest({ name: "unkeyed-2" }),
    ];
    const { tasks } = await api.client.createTasks({ tasks: requests });
    expect(tasks.map((t) => t.name)).toEqual(["unkeyed-1", "existing", "keyed-new", "unkeyed-2"]);
    expect(tasks.map((t) => t.idempotencyKey)).toEqual(["", "batch-existing", "batch-new", ""]);
    expect(tasks[1]!.id).toBe(existing.task!.id);
    expect(new Set(tasks.map((t) => t.id)).size).toBe(4);
    expect(await rowCounts(api.database.db.kysely)).toEqual({ tasks: before.tasks + 3, history: before.history + 3, jobs: before.jobs + 3 });

    // Replaying the whole batch creates nothing and answers the same tasks.
    const replay = await api.client.createTasks({ tasks: [requests[1]!, requests[2]!] });
    expect(replay.tasks.map((t) => t.id)).toEqual([tasks[1]!.id, tasks[2]!.id]);
    expect((await rowCounts(api.database.db.kysely)).tasks).toBe(before.tasks + 3);
  });

  it("rolls back the whole batch when one task reuses a key with a different request", async () => {
    await api.client.createTask(taskRequest({ name: "holder", idempotencyKey: "batch-conflict" }));
    const before = await rowCounts(api.database.db.kysely);
    const requests = [
      taskRequest({ name: "would-be-new" }),
      taskRequest({ name: "would-be-keyed", idempotencyKey: "batch-fresh" }),
      taskRequest({ name: "not the holder", idempotencyKey: "batch-conflict" }),
    ];
    await expectConnectError(api.client.createTasks({ tasks: requests }), Code.AlreadyExists, "batch-conflict");
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
    expect((await rowsForKey("batch-fresh")).tasks).toEqual([]);
  });

  it("collapses a key repeated inside one batch, and rejects it when the requests differ", async () => {
    const same = taskRequest({ idempotencyKey: "in-batch" });
    const { tasks } = await api.client.createTasks({ tasks: [same, same] });
    expect(tasks[0]!.id).toBe(tasks[1]!.id);
    expect((await rowsForKey("in-batch")).tasks).toHaveLength(1);

    const before = await rowCounts(api.database.db.kysely);
    const a = taskRequest({ idempotencyKey: "in-batch-differs" });
    const b = { ...a, priority: 9 };
    await expectConnectError(api.client.createTasks({ tasks: [taskRequest(), a, b] }), Code.AlreadyExists, "in-batch-differs");
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
  });
});
