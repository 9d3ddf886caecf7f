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

  readonly createdToStarted = new Histogram({
    name: "task_service_task_created_to_started_seconds",
    help: "Time from when an attempt became due (the task's creation, or its run_at if later: a delay or a retry's backoff) to when a worker started it, by queue and type",
    labelNames: ["queue", "type"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
    registers: [this.registry],
  });

  readonly rescuedAttempts = new Counter({
    name: "task_service_rescued_attempts_total",
    help: "Attempts whose worker was lost, settled by this process's reconciler, by type and the status they were left in",
    labelNames: ["type", "outcome"] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /**
   * Adds the agent gauges of a process that serves AgentService: agents with an assignment stream
   * open to this process, and the assignments it sent them that have not ended (acknowledged or not).
   */
  addAgentGauges(read: () => { connected: number; inFlight: number }): void {
    new Gauge({
      name: "task_service_agents_connected",
      help: "Remote agents with an assignment stream open to this server process",
      registers: [this.registry],
      collect() {
        this.set(read().connected);
      },
    });
    new Gauge({
      name: "task_service_agent_assignments_in_flight",
      help: "Attempts this server process assigned to its connected agents that have not ended yet",
      registers: [this.registry],
      collect() {
        this.set(read().inFlight);
      },
    });
  }

  /**
   * Adds the gauges read from the database at scrape time, for the process that serves the API:
   * tasks by status, queue depth and the oldest waiting task's age per queue, live workers and
   * their slots. Every gauge reads the same snapshot (`read`, cached by the caller), so a scrape
   * costs one snapshot however many gauges there are.
   */
  addDatabaseGauges(read: () => Promise<DatabaseSnapshot>, statuses: readonly string[]): void {
    // The database down: every gauge keeps its last values rather than fail the scrape.
    const snapshot = () => read().catch(() => undefined);
    const registers = [this.registry];
    new Gauge({
      name: "task_service_tasks",
      help: "Tasks in the database, by status (read at scrape time)",
      labelNames: ["status"] as const,
      registers,
      async collect() {
        const s = await snapshot();
        if (!s) return;
        for (const status of statuses) this.set({ status }, s.tasksByStatus.get(status) ?? 0);
      },
    });
    new Gauge({
      name: "task_service_queue_depth",
      help: "Tasks waiting for an attempt (queued, or retrying after a failed attempt), by queue and status (read at scrape time)",
      labelNames: ["queue", "status"] as const,
      registers,
      async collect() {
        const s = await snapshot();
        if (!s) return;
        this.reset(); // a queue that has no tasks any more leaves the output
        for (const q of s.queues) for (const status of WAITING_STATUSES) this.set({ queue: q.queue, status }, q.waiting[status]);
      },
    });
    new Gauge({
      name: "task_service_queue_oldest_waiting_age_seconds",
      help: "How long the queue's longest-waiting due task has waited (since its creation, or its run_at if later); 0 when none is due (read at scrape time)",
      labelNames: ["queue"] as const,
      registers,
      async collect() {
        const s = await snapshot();
        if (!s) return;
        this.reset();
        for (const q of s.queues) if (q.oldestWaitingAgeSeconds !== undefined) this.set({ queue: q.queue }, q.oldestWaitingAgeSeconds);
      },
    });
    new Gauge({
      name: "task_service_tasks_waiting_on_limit",
      help: "Waiting tasks held by a pause or a limit, by queue and reason: queue_paused, queue_limit (its RUNNING tasks at its limit), key_limit (their key at its limit) (read at scrape time)",
      labelNames: ["queue", "reason"] as const,
      registers,
      async collect() {
        const s = await snapshot();
        if (!s) return;
        this.reset();
        for (const w of s.waits) this.set({ queue: w.queue, reason: w.reason }, w.waiting);
      },
    });
    const limitGauge = (name: string, help: string, value: (l: DatabaseSnapshot["rateLimits"][number]) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ["limit"] as const,
        registers,
        async collect() {
          const s = await snapshot();
          if (!s) return;
          this.reset(); // a deleted limit leaves the output
          for (const l of s.rateLimits) this.set({ limit: l.name }, value(l));
        },
      });
    limitGauge(
      "task_service_rate_limit_tasks_waiting",
      "Tasks QUEUED or RETRYING under a rate limit (its queue's, or its type's in a queue without one), by limit (read at scrape time)",
      (l) => l.waiting,
    );
    limitGauge(
      "task_service_rate_limit_tokens",
      "Units left in a rate limit's bucket now, by limit; for a limit per key, in its emptiest key's bucket (read at scrape time). Below 1: its waiting tasks wait for the next unit",
      (l) => l.tokens,
    );
    const workerGauge = (name: string, help: string, value: (w: DatabaseSnapshot["workers"]) => number) =>
      new Gauge({
        name,
        help,
        registers,
        async collect() {
          const s = await snapshot();
          if (s) this.set(value(s.workers));
        },
      });
    workerGauge("task_service_workers", "Live worker processes (heartbeat within the lease; read at scrape time)", (w) => w.live);
    workerGauge("task_service_worker_slots", "Attempt slots of the live worker processes (their concurrency, summed; read at scrape time)", (w) => w.slots);
    workerGauge("task_service_worker_slots_busy", "Slots of the live worker processes running an attempt, as of their last heartbeat (read at scrape time)", (w) => w.busy);
  }
}

/** The statuses queue depth reports: a task waiting for its next attempt. */
export const WAITING_STATUSES = ["queued", "retrying"] as const;

/** What the database gauges show, read at once (src/api/metrics-snapshot.ts). */
export interface DatabaseSnapshot {
  tasksByStatus: Map<string, number>;
  /** Every queue that has tasks. */
  queues: { queue: string; waiting: Record<(typeof WAITING_STATUSES)[number], number>; oldestWaitingAgeSeconds: number | undefined }[];
  workers: { live: number; slots: number; busy: number };
  /** Waiting tasks held by a pause or a limit (store/queues.ts waitsByReason). */
  waits: { queue: string; reason: string; waiting: number }[];
  /** Each rate limit's use (store/rate-limits.ts listRateLimits). */
  rateLimits: { name: string; tokens: number; waiting: number }[];
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
