import http from "node:http";
import type net from "node:net";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/**
 * The process's Prometheus metrics. One registry per process (passed in, not global), so tests can
 * build their own; servers expose it at /metrics, and `serve` on TASK_METRICS_PORT when set.
 */
export class Metrics {
  readonly registry = new Registry();

  readonly rpcRequests = new Counter({
    name: "task_service_rpc_requests_total",
    help: "RPCs handled, by method and Connect code",
    labelNames: ["method", "code"] as const,
    registers: [this.registry],
  });

  readonly rpcDuration = new Histogram({
    name: "task_service_rpc_duration_seconds",
    help: "Time to handle a unary RPC",
    labelNames: ["method"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  readonly tasksCreated = new Counter({
    name: "task_service_tasks_created_total",
    help: "Tasks created (idempotent replays not counted), by type",
    labelNames: ["type"] as const,
    registers: [this.registry],
  });

  readonly attempts = new Counter({
    name: "task_service_attempts_total",
    help: "Task attempts finished by this process's workers, by type and outcome",
    labelNames: ["type", "outcome"] as const,
    registers: [this.registry],
  });

  readonly attemptDuration = new Histogram({
    name: "task_service_attempt_duration_seconds",
    help: "Time a plugin ran for one attempt, by type",
    labelNames: ["type"] as const,
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });

  readonly attemptsInFlight = new Gauge({
    name: "task_service_attempts_in_flight",
    help: "Attempts this process is running now",
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /**
   * Adds a gauge of tasks per status read from the database at scrape time (an index-only count),
   * for the process that serves the API.
   */
  addTaskStatusGauge(count: () => Promise<Map<string, number>>, statuses: readonly string[]): void {
    new Gauge({
      name: "task_service_tasks",
      help: "Tasks in the database, by status (read at scrape time)",
      labelNames: ["status"] as const,
      registers: [this.registry],
      async collect() {
        const counts = await count().catch(() => undefined);
        if (!counts) return; // database down: keep the last values rather than fail the scrape
        for (const status of statuses) this.set({ status }, counts.get(status) ?? 0);
      },
    });
  }
}

/** Serves GET /metrics alone, for worker processes that run no API (`serve` with TASK_METRICS_PORT). */
export async function startMetricsServer(metrics: Metrics, host: string, port: number): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    if (req.url?.split("?")[0] !== "/metrics") {
      res.writeHead(404).end();
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(text),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as net.AddressInfo;
  return {
    url: `http://${host}:${address.port}/metrics`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
