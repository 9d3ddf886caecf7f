import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { startTestApi, type TestApi } from "./helpers/api.js";

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => api?.close());

describe("CreateTask over each protocol", () => {
  it.each(["client", "grpc", "grpcWeb"] as const)("creates and reads back a task over %s", async (protocol) => {
    const client = api[protocol];
    const { task } = await client.createTask({ name: `hello-${protocol}`, type: "shell", parameters: { command: "echo hi" } });
    expect(task?.status).toBe(TaskStatus.QUEUED);
    const got = await client.getTask({ id: task!.id });
    expect(got.task?.name).toBe(`hello-${protocol}`);
    expect(got.task?.createdAt).toBeDefined();
  });
});
