import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { expectConnectError, rowCounts, taskRequest } from "./helpers/factory.js";

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => api?.close());

const protocols = ["client", "grpc", "grpcWeb"] as const;

describe.each(protocols)("over %s", (protocol) => {
  const client = () => api[protocol];

  it("creates, reads, lists and cancels a task", async () => {
    const { task, created } = await client().createTask(
      taskRequest({ name: `via-${protocol}`, type: "shell", parameters: { command: "echo hi", env: { A: "1" } }, priority: 12 }),
    );
    expect(created).toBe(true);
    expect(task).toMatchObject({ name: `via-${protocol}`, status: TaskStatus.QUEUED, priority: 12, parameters: { command: "echo hi", env: { A: "1" } } });

    const got = await client().getTask({ id: task!.id });
    expect(got.task).toEqual(task);

    const listed = await client().listTasks({ types: ["shell"], statuses: [TaskStatus.QUEUED], pageSize: 1000 });
    expect(listed.tasks.map((t) => t.id)).toContain(task!.id);
    expect(listed.totalCount).toBe(BigInt(listed.tasks.length));

    const { tasks } = await client().createTasks({ tasks: [taskRequest(), taskRequest()] });
    expect(tasks).toHaveLength(2);

    const { task: cancelled } = await client().cancelTask({ id: task!.id, reason: protocol });
    expect(cancelled?.status).toBe(TaskStatus.CANCELLED);
    const { history } = await client().getTaskHistory({ id: task!.id });
    expect(history.map((h) => h.details)).toEqual(["created", `cancelled by local (admin): ${protocol}`]);

    const counts = await client().getTaskStatusCounts({});
    expect(counts.counts).toHaveLength(8);
    const types = await client().listTaskTypes({});
    expect(types.types.map((t) => t.name)).toContain("shell");
  });

  it("answers the same error codes and messages as Connect", async () => {
    const before = await rowCounts(api.database.db.kysely);
    // Thunks, so that no call is left rejecting before it is awaited.
    const cases: Array<[(c: typeof api.client) => Promise<unknown>, Code, string]> = [
      [(c) => c.getTask({ id: 999_999n }), Code.NotFound, "999999"],
      [(c) => c.getTask({ id: 0n }), Code.InvalidArgument, "id"],
      [(c) => c.createTask(taskRequest({ type: "shell", parameters: {} })), Code.InvalidArgument, "parameters.command"],
      [(c) => c.listTasks({ pageSize: 5000 }), Code.InvalidArgument, "page_size"],
      [(c) => c.listTasks({ statuses: [42 as TaskStatus] }), Code.InvalidArgument, "statuses[0]"],
    ];
    for (const [call, code, message] of cases) {
      const err = await expectConnectError(call(client()), code, message);
      const reference = await expectConnectError(call(api.client), code);
      expect(err.rawMessage).toBe(reference.rawMessage);
    }
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
  });

  it("answers FailedPrecondition and AlreadyExists", async () => {
    const { task } = await client().createTask(taskRequest({ idempotencyKey: `key-${protocol}` }));
    await client().cancelTask({ id: task!.id });
    await expectConnectError(client().cancelTask({ id: task!.id }), Code.FailedPrecondition, "cancelled");
    await expectConnectError(client().retryTask({ id: (await client().createTask(taskRequest())).task!.id }), Code.FailedPrecondition);
    const conflict = await expectConnectError(
      client().createTask(taskRequest({ idempotencyKey: `key-${protocol}`, priority: 99 })),
      Code.AlreadyExists,
      `key-${protocol}`,
    );
    expect(conflict).toBeInstanceOf(ConnectError);
  });
});
