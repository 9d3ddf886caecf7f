import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { Metrics, startMetricsServer } from "../src/metrics.js";
import type { Workers } from "../src/worker/runner.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { waitFor } from "./helpers/wait.js";
import { startTestWorkers } from "./helpers/workers.js";

const metrics = new Metrics();
let api: TestApi;
let workers: Workers;
beforeAll(async () => {
  api = await startTestApi({ metrics });
  workers = await startTestWorkers(api.database, {}, metrics);
});
afterAll(async () => {
  await workers?.stop();
  await api?.close();
});

/** The value of one sample in Prometheus text format, or undefined. */
function sample(text: string, name: string, labels: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.split(" ").at(-1));
}

describe("/metrics", () => {
  it("counts RPCs by code, tasks created, attempts by outcome, and tasks by status", async () => {
    const { task } = await api.client.createTask({ name: "m", type: "noop" });
    await api.client.createTask({ name: "f", type: "noop", parameters: { fail: "no" }, maxAttempts: 1 });
    await expect(api.client.getTask({ id: 999_999n })).rejects.toThrow();
    await waitFor(async () => (await api.client.getTaskStatusCounts({})).counts.find((c) => c.status === TaskStatus.FAILED)?.count === 1n, "the failing task to fail");
    await waitFor(async () => (await api.client.getTask({ id: task!.id })).task?.status === TaskStatus.SUCCEEDED, "the task to succeed");

    const res = await fetch(`${api.server.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(sample(text, "task_service_tasks_created_total", 'type="noop"')).toBe(2);
    expect(sample(text, "task_service_attempts_total", 'type="noop",outcome="succeeded"')).toBe(1);
    expect(sample(text, "task_service_attempts_total", 'type="noop",outcome="failed"')).toBe(1);
    expect(sample(text, "task_service_rpc_requests_total", 'method="CreateTask",code="ok"')).toBe(2);
    expect(sample(text, "task_service_rpc_requests_total", 'method="GetTask",code="NotFound"')).toBe(1);
    expect(sample(text, "task_service_tasks", 'status="succeeded"')).toBe(1);
    expect(sample(text, "task_service_tasks", 'status="cancelled"')).toBe(0);
    expect(text).toMatch(/^process_cpu_user_seconds_total \d/m);
  });

  it("serves a worker-only process's metrics on their own port", async () => {
    const server = await startMetricsServer(metrics, "127.0.0.1", 0);
    try {
      const text = await (await fetch(server.url)).text();
      expect(text).toContain("task_service_attempts_total");
      expect((await fetch(server.url.replace("/metrics", "/other"))).status).toBe(404);
    } finally {
      await server.close();
    }
  });
});
