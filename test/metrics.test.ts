import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { RateLimitService } from "../src/gen/task/v1/limit_pb.js";
import { QueueService } from "../src/gen/task/v1/queue_pb.js";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { Metrics, startMetricsServer } from "../src/metrics.js";
import { behindLockTimeout } from "../src/store/queues.js";
import { listRateLimits } from "../src/store/rate-limits.js";
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
    // Both attempts started: each observed its wait once, by queue and type.
    expect(sample(text, "task_service_task_created_to_started_seconds_count", 'queue="default",type="noop"')).toBe(2);
    expect(text).toMatch(/^task_service_workers 1$/m);
    expect(text).toMatch(/^task_service_worker_slots 4$/m);
  });

  it("reports queue depth and the oldest waiting task's age per queue, from a paused queue; each rate limit's waiting tasks and tokens left", async () => {
    const transport = createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1" });
    const queues = createClient(QueueService, transport);
    await queues.pauseQueue({ name: "held" });
    // Rate limits over queues no worker here serves: one spent (its one unit taken as a claim
    // takes it), one per key with key a spent and key b holding one of its two units.
    const limits = createClient(RateLimitService, transport);
    await limits.setRateLimit({ limit: { name: "spent", rate: 1, period: { seconds: 3600n }, burst: 1, queue: "spent-q" } });
    await limits.setRateLimit({ limit: { name: "tenants", rate: 1, period: { seconds: 3600n }, burst: 2, perKey: true, queue: "tenants-q" } });
    await limits.setRateLimit({ limit: { name: "idle", rate: 5, period: { seconds: 1n }, burst: 3, taskType: "send_email" } });
    for (let i = 0; i < 3; i++) await api.client.createTask({ name: `spent-${i}`, type: "noop", queue: "spent-q" });
    await api.client.createTask({ name: "tenant-a", type: "noop", queue: "tenants-q", key: "a" });
    const take = (limit: string, key: string | null) => api.database.db.pool.query("select task_rate_take($1, $2) as ok", [limit, key]);
    await take("spent", null);
    await take("tenants", "a");
    await take("tenants", "a");
    await take("tenants", "b");
    await api.client.createTask({ name: "w1", type: "noop", queue: "held" });
    await api.client.createTask({ name: "w2", type: "noop", queue: "held" });
    // Delayed an hour: waiting, but not due, so it adds to the depth and not to the age.
    await api.client.createTask({ name: "later", type: "noop", queue: "later", runAt: timestampFromDate(new Date(Date.now() + 3_600_000)) });
    await new Promise((resolve) => setTimeout(resolve, 5_100)); // past the 5 s cache of the database gauges
    const text = await (await fetch(`${api.server.url}/metrics`)).text();
    expect(sample(text, "task_service_queue_depth", 'queue="held",status="queued"')).toBe(2);
    expect(sample(text, "task_service_queue_depth", 'queue="held",status="retrying"')).toBe(0);
    expect(sample(text, "task_service_queue_depth", 'queue="later",status="queued"')).toBe(1);
    expect(sample(text, "task_service_queue_oldest_waiting_age_seconds", 'queue="held"')).toBeGreaterThanOrEqual(5);
    expect(sample(text, "task_service_queue_oldest_waiting_age_seconds", 'queue="later"')).toBe(0);
    expect(sample(text, "task_service_tasks_waiting_on_limit", 'queue="held",reason="queue_paused"')).toBe(2);
    expect(sample(text, "task_service_rate_limit_tasks_waiting", 'limit="spent"')).toBe(3);
    // An hour per unit: after a few seconds, still far below one.
    expect(sample(text, "task_service_rate_limit_tokens", 'limit="spent"')).toBeLessThan(0.01);
    expect(sample(text, "task_service_rate_limit_tasks_waiting", 'limit="tenants"')).toBe(1);
    expect(sample(text, "task_service_rate_limit_tokens", 'limit="tenants"')).toBeLessThan(0.01);
    expect(sample(text, "task_service_rate_limit_tasks_waiting", 'limit="idle"')).toBe(0);
    expect(sample(text, "task_service_rate_limit_tokens", 'limit="idle"')).toBe(3);
  });

  it("reads the rate limits behind a 200 ms lock timeout: a scrape does not wait for a lock on them", async () => {
    const locker = new pg.Client({ connectionString: api.database.url });
    await locker.connect();
    try {
      await locker.query("begin");
      await locker.query("lock table rate_limits in access exclusive mode");
      const t0 = performance.now();
      expect(await behindLockTimeout(api.database.db.kysely, listRateLimits)).toBeUndefined();
      expect(performance.now() - t0).toBeLessThan(2_000);
    } finally {
      await locker.query("rollback");
      await locker.end();
    }
    expect((await behindLockTimeout(api.database.db.kysely, listRateLimits))?.map((l) => l.name)).toEqual(["idle", "spent", "tenants"]);
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
