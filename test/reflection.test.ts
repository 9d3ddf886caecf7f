import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { createTask } from "./helpers/factory.js";

const execFileAsync = promisify(execFile);
/** buf curl, an outside reflection client (the same one the README shows). */
const buf = path.resolve("node_modules/.bin/buf");

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => api?.close());

async function bufCurl(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(buf, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], { timeout: 30_000 });
  return stdout;
}

describe.each(["grpc-v1", "grpc-v1alpha"])("gRPC server reflection (%s)", (reflectProtocol) => {
  it("lists the services", async () => {
    const out = await bufCurl("--reflect-protocol", reflectProtocol, "--list-services", api.server.url);
    expect(out.trim().split("\n").sort()).toEqual(
      [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "task.v1.AgentService",
        "task.v1.AuditService",
        "task.v1.QueueService",
        "task.v1.RateLimitService",
        "task.v1.ScheduleService",
        "task.v1.TaskControlService",
        "task.v1.TaskService",
        "task.v1.TokenService",
        "task.v1.WorkerService",
      ],
    );
  });

  it("lets a client call a method with no .proto files", async () => {
    const task = await createTask(api.client, { name: "reflected" });
    const out = await bufCurl("--reflect-protocol", reflectProtocol, "-d", JSON.stringify({ id: String(task.id) }), `${api.server.url}/task.v1.TaskService/GetTask`);
    expect(JSON.parse(out).task).toMatchObject({ id: String(task.id), name: "reflected", status: "TASK_STATUS_QUEUED" });
  });

  it("lists every method", async () => {
    const out = await bufCurl("--reflect-protocol", reflectProtocol, "--list-methods", api.server.url);
    expect(out).toContain("task.v1.TaskService/CreateTask");
    expect(out).toContain("task.v1.TaskService/WatchTask");
  });
});
