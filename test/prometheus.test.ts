import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RateLimitService } from "../src/gen/task/v1/limit_pb.js";
import { QueueService } from "../src/gen/task/v1/queue_pb.js";
import { Metrics, startMetricsServer } from "../src/metrics.js";
import type { Workers } from "../src/worker/runner.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { waitFor } from "./helpers/wait.js";
import { startTestWorkers } from "./helpers/workers.js";

/**
 * A real Prometheus (Debian's `prometheus`, installed by scripts/test-prereqs.sh) scrapes the API
 * server's /metrics (with a reader token, as tokens are configured) and a worker's own metrics port
 * every second, and answers PromQL for what an operator watches: queue depth, tasks waiting on a
 * spent rate limit, and the created-to-started p99.
 */

const PROMETHEUS = "/usr/bin/prometheus";
const TOKENS = { reader: "reader-secret-for-prometheus-01", admin: "admin-secret-for-prometheus-001" };
const asAdmin: Interceptor = (next) => (req) => {
  req.header.set("authorization", `Bearer ${TOKENS.admin}`);
  return next(req);
};

let api: TestApi;
let workers: Workers;
let workerMetrics: { url: string; close(): Promise<void> };
let prometheus: ChildProcess | undefined;
let promUrl: string;
let dir: string;

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** One PromQL instant query: the result vector's samples as (labels, value). */
async function query(promql: string): Promise<{ metric: Record<string, string>; value: number }[]> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(promql)}`);
  const body = (await res.json()) as { status: string; error?: string; data: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] } };
  if (body.status !== "success") throw new Error(`${promql}: ${body.error}`);
  return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
}

/** The single value of `promql`, once it is one finite number. */
const finiteValue = async (promql: string) => {
  const result = await query(promql);
  return result.length === 1 && Number.isFinite(result[0]!.value) ? result[0]!.value : undefined;
};

beforeAll(async () => {
  if (!existsSync(PROMETHEUS)) throw new Error(`${PROMETHEUS} is missing: apt-get install -y prometheus (scripts/test-prereqs.sh installs it as root)`);
  api = await startTestApi({ config: { apiTokens: [`prom:reader:${TOKENS.reader}`, `boss:admin:${TOKENS.admin}`] }, interceptors: [asAdmin], metrics: new Metrics() });
  const metrics = new Metrics();
  workers = await startTestWorkers(api.database, {}, metrics);
  // What `serve` with TASK_METRICS_PORT starts: the worker process's own metrics, no token.
  workerMetrics = await startMetricsServer(metrics, "127.0.0.1", 0);

  dir = mkdtempSync(path.join(tmpdir(), "prometheus-test-"));
  const hostPort = (url: string) => new URL(url).host;
  writeFileSync(
    path.join(dir, "prometheus.yml"),
    [
      "global:",
      "  scrape_interval: 1s",
      "  scrape_timeout: 1s",
      "  evaluation_interval: 1s",
      "scrape_configs:",
      "  - job_name: api",
      "    authorization:",
      `      credentials: ${TOKENS.reader}`,
      "    static_configs:",
      `      - targets: ["${hostPort(api.server.url)}"]`,
      "  - job_name: worker",
      "    static_configs:",
      `      - targets: ["${hostPort(workerMetrics.url)}"]`,
      "",
    ].join("\n"),
  );
  const listen = `127.0.0.1:${await freePort()}`;
  promUrl = `http://${listen}`;
  const log = openSync(path.join(dir, "prometheus.log"), "w");
  prometheus = spawn(
    PROMETHEUS,
    [`--config.file=${path.join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${path.join(dir, "data")}`, `--web.listen-address=${listen}`],
    { stdio: ["ignore", log, log] },
  );
  await waitFor(async () => (await fetch(`${promUrl}/-/ready`)).ok, `prometheus to be ready (log: ${path.join(dir, "prometheus.log")})`, 20_000);
}, 60_000);

afterAll(async () => {
  if (prometheus?.pid !== undefined && prometheus.exitCode === null) {
    const exited = new Promise((resolve) => prometheus!.once("exit", resolve));
    process.kill(prometheus.pid, "SIGTERM");
    await exited;
  }
  await workerMetrics?.close();
  await workers?.stop();
  await api?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("a real Prometheus scraping the server and a worker", () => {
  it("answers PromQL for queue depth, the oldest waiting task's age, waits on a rate limit and the created-to-started p99", async () => {
    try {
      // Both targets up: the API's /metrics took the reader token.
      await waitFor(async () => (await query("up == 1")).length === 2, "both targets to be scraped");

      const transport = createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1", interceptors: [asAdmin] });
      const queues = createClient(QueueService, transport);
      await queues.pauseQueue({ name: "held" });
      for (let i = 0; i < 3; i++) await api.client.createTask({ name: `held-${i}`, type: "noop", queue: "held" });
      // A rate limit of one unit an hour whose unit is spent (taken as a claim takes it), over a queue no worker serves.
      await createClient(RateLimitService, transport).setRateLimit({ limit: { name: "hourly", rate: 1, period: { seconds: 3600n }, burst: 1, queue: "hourly-q" } });
      for (let i = 0; i < 2; i++) await api.client.createTask({ name: `hourly-${i}`, type: "noop", queue: "hourly-q" });
      await api.database.db.pool.query("select task_rate_take('hourly', null)");
      // Delayed: each attempt starts 3 s after creation, but its wait counts from run_at.
      const soon = timestampFromDate(new Date(Date.now() + 3_000));
      await api.client.createTasks({ tasks: Array.from({ length: 5 }, (_, i) => ({ name: `later-${i}`, type: "noop", runAt: soon })) });
      await api.client.createTasks({ tasks: Array.from({ length: 10 }, (_, i) => ({ name: `now-${i}`, type: "noop" })) });
      // The histogram's series exist once the first attempts started; more attempts after that make its rate non-zero.
      await waitFor(async () => (await query('task_service_task_created_to_started_seconds_count{queue="default",type="noop"}')).length === 1, "the histogram to be scraped", 20_000);
      await api.client.createTasks({ tasks: Array.from({ length: 10 }, (_, i) => ({ name: `more-${i}`, type: "noop" })) });

      const depth = await waitFor(() => finiteValue('task_service_queue_depth{queue="held",status="queued"}'), "the held queue's depth", 20_000);
      expect(depth).toBe(3);
      // What waits on the rate limit, and that it has no unit to give: the alert an operator writes.
      const onLimit = await waitFor(
        () => finiteValue('task_service_rate_limit_tasks_waiting{limit="hourly"} and on (limit) task_service_rate_limit_tokens < 1'),
        "the tasks waiting on the spent rate limit",
        20_000,
      );
      expect(onLimit).toBe(2);
      const age = await waitFor(async () => {
        const v = await finiteValue('task_service_queue_oldest_waiting_age_seconds{queue="held"}');
        return v !== undefined && v > 0 ? v : undefined;
      }, "the held queue's oldest waiting age", 20_000);
      expect(age).toBeGreaterThan(0);
      expect(age).toBeLessThan(60);

      const p99 = await waitFor(
        () => finiteValue("histogram_quantile(0.99, sum by (le) (rate(task_service_task_created_to_started_seconds_bucket[1m])))"),
        "the created-to-started p99",
        20_000,
      );
      expect(p99).toBeGreaterThan(0);
      // The delayed tasks waited 3 s for their run_at; counted from creation, the p99 would be in the (2.5, 5] bucket.
      expect(p99).toBeLessThan(2.5);
      // The worker's counters reach Prometheus from its own port: 25 attempts succeeded.
      await waitFor(async () => (await finiteValue('sum(task_service_attempts_total{job="worker",outcome="succeeded"})')) === 25, "the worker's attempts", 20_000);
      expect(await finiteValue("task_service_worker_slots")).toBe(4);
    } catch (err) {
      const log = path.join(dir, "prometheus.log");
      throw new Error(`${String(err)}\nprometheus log:\n${existsSync(log) ? readFileSync(log, "utf8").slice(-3000) : "(none)"}`);
    }
  }, 60_000);
});
