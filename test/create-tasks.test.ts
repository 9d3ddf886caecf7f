import { Code } from "@connectrpc/connect";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { startInMemoryApi, type InMemoryApi } from "./helpers/api.js";
import { expectConnectError, jobOf, rowCounts, taskRequest } from "./helpers/factory.js";

let api: InMemoryApi;
beforeAll(async () => {
  api = await startInMemoryApi();
});
afterAll(async () => api?.close());

describe("CreateTasks", () => {
  it("returns the tasks in request order with ascending ids, each with history and a job", async () => {
    const before = await rowCounts(api.database.db.kysely);
    const requests = [
      taskRequest({ name: "b-first", type: "shell", parameters: { command: "true" } }),
      taskRequest({ name: "a-second", type: "send_email", parameters: { to: "x@example.com", subject: "s", body: "b" } }),
      taskRequest({ name: "d-third", parameters: { sleep_ms: 10 }, priority: 3 }),
      taskRequest({ name: "c-fourth" }),
      taskRequest({ name: "e-fifth", priority: -3 }),
    ];
    const { tasks } = await api.client.createTasks({ tasks: requests });
    expect(tasks.map((t) => t.name)).toEqual(requests.map((r) => r.name));
    expect(tasks.map((t) => t.type)).toEqual(requests.map((r) => r.type));
    for (let i = 1; i < tasks.length; i++) expect(tasks[i]!.id).toBeGreaterThan(tasks[i - 1]!.id);
    expect(tasks.every((t) => t.status === TaskStatus.QUEUED && t.attempts === 0)).toBe(true);

    expect(await rowCounts(api.database.db.kysely)).toEqual({ tasks: before.tasks + 5, history: before.history + 5, jobs: before.jobs + 5 });
    for (const task of tasks) {
      expect(await jobOf(api.database.db.kysely, task.id)).toMatchObject({ key: `task:${task.id}`, priority: 0 - task.priority });
      const { history } = await api.client.getTaskHistory({ id: task.id });
      expect(history.map((h) => h.details)).toEqual(["created"]);
    }
  });

  it("keeps request order in a large batch", async () => {
    const requests = Array.from({ length: 1000 }, (_, i) => taskRequest({ name: `bulk-${i}`, priority: (i * 7) % 100 }));
    const { tasks } = await api.client.createTasks({ tasks: requests });
    expect(tasks.map((t) => t.name)).toEqual(requests.map((r) => r.name));
    expect(tasks.map((t) => t.priority)).toEqual(requests.map((r) => r.priority));
    for (let i = 1; i < tasks.length; i++) expect(tasks[i]!.id).toBeGreaterThan(tasks[i - 1]!.id);
    const stored = await api.database.db.kysely.selectFrom("tasks").select(["id", "name"]).where("name", "like", "bulk-%").orderBy("id").execute();
    expect(stored.map((r) => r.name)).toEqual(requests.map((r) => r.name));
  });

  it("writes nothing when one task of many is invalid, and names it", async () => {
    const before = await rowCounts(api.database.db.kysely);
    const requests = Array.from({ length: 8 }, () => taskRequest());
    requests[5] = taskRequest({ type: "shell", parameters: { command: "" } });
    await expectConnectError(api.client.createTasks({ tasks: requests }), Code.InvalidArgument, "tasks[5].parameters.command");
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
  });

  it("names the index of a bad top-level field too", async () => {
    const before = await rowCounts(api.database.db.kysely);
    const requests = [taskRequest(), taskRequest(), taskRequest({ name: "" })];
    await expectConnectError(api.client.createTasks({ tasks: requests }), Code.InvalidArgument, "tasks[2].name");
    await expectConnectError(api.client.createTasks({ tasks: [taskRequest({ type: "nope" }), taskRequest()] }), Code.InvalidArgument, "tasks[0].type");
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
  });

  it("rejects an empty batch", async () => {
    await expectConnectError(api.client.createTasks({ tasks: [] }), Code.InvalidArgument, "tasks");
  });
});

describe("CreateTasks batch size limit", () => {
  let limited: InMemoryApi;
  beforeAll(async () => {
    limited = await startInMemoryApi({ config: { maxBatchSize: 3 } });
  });
  afterAll(async () => limited?.close());

  it("accepts maxBatchSize tasks and rejects one more", async () => {
    const before = await rowCounts(limited.database.db.kysely);
    await expectConnectError(
      limited.client.createTasks({ tasks: [taskRequest(), taskRequest(), taskRequest(), taskRequest()] }),
      Code.InvalidArgument,
      "at most 3",
    );
    expect(await rowCounts(limited.database.db.kysely)).toEqual(before);
    const { tasks } = await limited.client.createTasks({ tasks: [taskRequest(), taskRequest(), taskRequest()] });
    expect(tasks).toHaveLength(3);
  });
});

describe("task and job are written in one transaction", () => {
  const rename = (from: string, to: string) =>
    sql`alter function ${sql.raw(`graphile_worker.${from}`)}(graphile_worker.job_spec[], boolean) rename to ${sql.raw(to)}`.execute(api.database.db.kysely);

  it("rolls the tasks back when the job cannot be enqueued", async () => {
    const before = await rowCounts(api.database.db.kysely);
    await rename("add_jobs", "add_jobs_broken");
    try {
      await expectConnectError(api.client.createTask(taskRequest()), Code.Internal);
      await expectConnectError(api.client.createTasks({ tasks: [taskRequest(), taskRequest()] }), Code.Internal);
      // With an idempotency key the insert runs in an explicit transaction: same outcome.
      await expectConnectError(api.client.createTask(taskRequest({ idempotencyKey: "rollback-key" })), Code.Internal);
      // Internal errors do not leak database details to the client.
      const err = await expectConnectError(api.client.createTask(taskRequest()), Code.Internal);
      expect(err.rawMessage).not.toMatch(/add_jobs|graphile/);
    } finally {
      await rename("add_jobs_broken", "add_jobs");
    }
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
    // The key was not consumed by the failed attempt.
    const { created } = await api.client.createTask(taskRequest({ idempotencyKey: "rollback-key" }));
    expect(created).toBe(true);
  });
});
