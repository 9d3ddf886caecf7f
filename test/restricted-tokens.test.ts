import { Code } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BulkAction } from "../src/gen/task/v1/control_pb.js";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { Role } from "../src/gen/task/v1/token_pb.js";
import { Metrics } from "../src/metrics.js";
import { bearerToken } from "../src/sdk/client.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { expectConnectError, taskRequest } from "./helpers/factory.js";
import { clientsAs, CONFIGURED, drain, snapshot, TOKENS, type protocols } from "./helpers/tokens.js";
import { waitFor } from "./helpers/wait.js";

// Tokens restricted to queues or types (`task-cli token create --queues/--types`): what they may see
// and touch, over Connect and gRPC.

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi({ config: { apiTokens: CONFIGURED }, interceptors: [bearerToken(TOKENS.admin)], metrics: new Metrics() });
});
afterAll(async () => api?.close());

const as = (token: string, protocol: keyof typeof protocols = "connect") => clientsAs(api.server.url, token, protocol);

describe("a token restricted to a queue", () => {
  it("sees and touches only that queue's tasks", async () => {
    const admin = as(TOKENS.admin);
    const { secret } = await admin.token.createToken({ name: "reports-op", role: Role.OPERATOR, queues: ["reports"] });
    const mine = (await admin.task.createTask(taskRequest({ name: "in-reports", queue: "reports" }))).task!;
    const other = (await admin.task.createTask(taskRequest({ name: "in-default" }))).task!;
    expect(mine.queue).toBe("reports");
    for (const protocol of ["connect", "grpc"] as const) {
      const c = as(secret, protocol);
      const listed = await c.task.listTasks({ pageSize: 1000 });
      expect(listed.tasks.map((t) => t.queue)).toEqual(listed.tasks.map(() => "reports"));
      expect(listed.tasks.map((t) => t.id)).toContain(mine.id);
      expect((await c.task.listTasks({ queues: ["default"] })).tasks).toEqual([]);
      await expect(c.task.getTask({ id: mine.id })).resolves.toMatchObject({ task: { id: mine.id } });
      const before = await snapshot(api.database.db.kysely);
      await expectConnectError(c.task.getTask({ id: other.id }), Code.NotFound, `task ${other.id} not found`);
      await expectConnectError(c.task.cancelTask({ id: other.id }), Code.NotFound);
      await expectConnectError(c.control.pauseTask({ id: other.id }), Code.NotFound);
      await expectConnectError(c.task.getTaskLogs({ id: other.id }), Code.NotFound);
      await expectConnectError(c.task.getTaskHistory({ id: other.id }), Code.NotFound);
      const watch = new AbortController();
      await expectConnectError(drain(c.task.watchTask({ id: other.id }, { signal: watch.signal }), watch, 5_000), Code.NotFound, `task ${other.id} not found`);
      const mineWatch = new AbortController();
      await drain(c.task.watchTask({ id: mine.id }, { signal: mineWatch.signal }), mineWatch);
      await expectConnectError(c.task.createTask(taskRequest()), Code.PermissionDenied, "token reports-op may only use queues reports");
      await expectConnectError(c.task.createTasks({ tasks: [taskRequest({ queue: "reports" }), taskRequest()] }), Code.PermissionDenied, "tasks[1]");
      await expectConnectError(c.queue.pauseQueue({ name: "default" }), Code.PermissionDenied, "queue default is not available to token reports-op");
      await expectConnectError(c.task.getTaskThroughput({}), Code.PermissionDenied, "restricted to queues reports");
      await expectConnectError(c.worker.listWorkers({}), Code.PermissionDenied);
      expect(await snapshot(api.database.db.kysely)).toEqual(before);
      const counts = await c.task.getTaskStatusCounts({});
      expect(counts.queueCounts.map((q) => q.queue)).toEqual(counts.queueCounts.map(() => "reports"));
      expect((await c.queue.listQueues({})).queues.map((q) => q.name)).toEqual(["reports"]);
      const dry = await c.control.bulkTasks({ action: BulkAction.CANCEL, selection: { all: true }, dryRun: true });
      expect(dry.matched).toBe(BigInt(listed.tasks.length));
    }
    const created = await as(secret, "grpc").task.createTask(taskRequest({ queue: "reports" }));
    expect(created.task?.queue).toBe("reports");
    await expect(as(secret).task.cancelTask({ id: mine.id })).resolves.toMatchObject({ task: { status: TaskStatus.CANCELLED } });
    // The log download and /metrics check the same way.
    const get = (path: string) => fetch(`${api.server.url}${path}`, { headers: { authorization: `Bearer ${secret}` } });
    expect((await get(`/tasks/${mine.id}/logs`)).status).toBe(200);
    expect((await get(`/tasks/${other.id}/logs`)).status).toBe(404);
    const refused = await get("/metrics");
    expect(refused.status).toBe(403);
    expect(await refused.text()).toMatch(/restricted to queues reports/);
  });
});

describe("a token restricted to a type", () => {
  it("follows only that type's changes in WatchTasks, and sees only its types", async () => {
    const admin = as(TOKENS.admin);
    const { secret } = await admin.token.createToken({ name: "email-watch", role: Role.READER, types: ["send_email"] });
    const types = await as(secret).task.listTaskTypes({});
    expect(types.types.map((t) => t.name)).toEqual(["send_email"]);
    expect((await as(secret).queue.listQueues({})).queues).toEqual([]);
    const ac = new AbortController();
    const seen: string[] = [];
    const reading = (async () => {
      try {
        for await (const m of as(secret, "grpc").task.watchTasks({}, { signal: ac.signal })) if (m.event.case === "change") seen.push(m.event.value.task!.type);
      } catch (err) {
        if (!ac.signal.aborted) throw err;
      }
    })();
    try {
      // The stream starts from when it attached: create pairs until one of its type arrives.
      const later = timestampFromDate(new Date(4_000_000_000_000));
      await waitFor(
        async () => {
          await admin.task.createTasks({ tasks: [taskRequest({ runAt: later }), taskRequest({ type: "send_email", parameters: { to: "a@example.com", subject: "s", body: "b" }, runAt: later })] });
          return seen.length > 0;
        },
        "a send_email change",
        20_000,
      );
      expect(new Set(seen)).toEqual(new Set(["send_email"]));
    } finally {
      ac.abort();
      await reading;
    }
  }, 30_000);
});
