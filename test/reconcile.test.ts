import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { Metrics } from "../src/metrics.js";
import { reconcile } from "../src/worker/reconcile.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { spawnCli } from "./helpers/process.js";
import { waitFor } from "./helpers/wait.js";
import { startTestWorkers } from "./helpers/workers.js";

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => api?.close());

const sqlQuery = (text: string, values: unknown[] = []) => api.database.db.pool.query(text, values);

async function statusOf(id: bigint): Promise<TaskStatus | undefined> {
  return (await api.client.getTask({ id })).task?.status;
}

async function historyOf(id: bigint): Promise<string[]> {
  const { history } = await api.client.getTaskHistory({ id });
  return history.map((h) => `${TaskStatus[h.status]}:${h.attempt}`);
}

describe("reconciler", () => {
  it("kill -9 of a worker mid-task: another worker sees its liveness lock free and finishes the task at once", async () => {
    const leaseMs = 1_500;
    const victim = spawnCli(["serve", "-n", "2"], { DATABASE_URL: api.database.url, TASK_HEARTBEAT_MS: "200", LOG_LEVEL: "warn" });
    const { task } = await api.client.createTask({ name: "survivor", type: "noop", parameters: { sleep_ms: 2_000 } });
    await waitFor(async () => (await statusOf(task!.id)) === TaskStatus.RUNNING, "the victim to start the task", 30_000);
    victim.child.kill("SIGKILL");
    await victim.exited;

    const rescuer = await startTestWorkers(api.database, { leaseMs, reconcileIntervalMs: 250 });
    try {
      // Lease + one reconcile interval + the task's own 2 s run, with room for a slow machine.
      await waitFor(async () => (await statusOf(task!.id)) === TaskStatus.SUCCEEDED, "the rescued task to succeed", leaseMs + 250 + 2_000 + 5_000);
    } finally {
      await rescuer.stop();
    }
    expect(await historyOf(task!.id)).toEqual(["QUEUED:0", "RUNNING:1", "RETRYING:1", "RUNNING:2", "SUCCEEDED:2"]);
    const { history } = await api.client.getTaskHistory({ id: task!.id });
    expect(history[2]!.details).toMatch(/^attempt 1 lost: worker \S+ exited; retrying now$/);
    // The dead worker's job was released and removed: nothing is left locked.
    const locked = await sqlQuery("select count(*)::int as n from graphile_worker.jobs where locked_at is not null and starts_with(task_identifier, 'run:')");
    expect(locked.rows[0].n).toBe(0);
  }, 60_000);

  it("kill -9 of a worker whose slots are all busy: the waiting tasks' jobs were never taken, and run elsewhere", async () => {
    const victim = spawnCli(["serve", "-n", "1"], {
      DATABASE_URL: api.database.url,
      TASK_HEARTBEAT_MS: "200",
      LOG_LEVEL: "warn",
    });
    onTestFinished(() => void victim.child.kill("SIGKILL"));
    const { tasks } = await api.client.createTasks({ tasks: [1, 2, 3, 4].map((i) => ({ name: `queued-${i}`, type: "noop", parameters: { sleep_ms: 1_500 } })) });
    // One running (its claim took its job over); the other three jobs wait in the database, neither
    // taken nor locked: a worker takes only what its free slots can start.
    await waitFor(async () => {
      const running = await sqlQuery("select count(*)::int as n from tasks where id = any($1::bigint[]) and status = 'running'", [tasks.map((t) => t.id.toString())]);
      return running.rows[0].n === 1;
    }, "the victim to run one task", 30_000);
    const keys = tasks.map((t) => `task:${t.id}`);
    const waiting = await sqlQuery("select count(*)::int as n, count(locked_at)::int as locked from graphile_worker.jobs where key = any($1::text[])", [keys]);
    expect(waiting.rows[0]).toEqual({ n: 3, locked: 0 });
    const registered = await sqlQuery("select graphile_ids from workers");
    expect(registered.rows).toHaveLength(1);
    victim.child.kill("SIGKILL");
    await victim.exited;

    const rescuer = await startTestWorkers(api.database, { leaseMs: 1_500, reconcileIntervalMs: 250 });
    try {
      for (const t of tasks) {
        await waitFor(async () => (await statusOf(t.id)) === TaskStatus.SUCCEEDED, `task ${t.name} to succeed`, 30_000);
      }
    } finally {
      await rescuer.stop();
    }
    const running = await sqlQuery("select count(*)::int as n from task_history where task_id = any($1::bigint[]) and status = 'running'", [tasks.map((t) => t.id.toString())]);
    // The one the victim started ran twice (attempt 1 lost); the three others ran once.
    expect(running.rows[0].n).toBe(5);
    expect((await sqlQuery("select count(*)::int as n from workers")).rows[0].n).toBe(0);
  }, 60_000);

  it("re-enqueues a task whose job was deleted", async () => {
    const { task } = await api.client.createTask({ name: "orphan", type: "noop", runAt: { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600) } });
    const id = task!.id.toString();
    await sqlQuery("select graphile_worker.remove_job($1)", [`task:${id}`]);
    // Recently changed tasks are left alone; age it past that guard.
    await sqlQuery("update tasks set updated_at = now() - interval '1 minute' where id = $1", [id]);
    expect((await sqlQuery("select count(*)::int as n from graphile_worker.jobs where key = $1", [`task:${id}`])).rows[0].n).toBe(0);

    // Its job is due in an hour: the re-enqueue tells the workers when (task_wake), as every enqueue does.
    const listener = new pg.Client({ connectionString: api.database.url });
    await listener.connect();
    const wakes: string[] = [];
    listener.on("notification", (n) => wakes.push(n.payload ?? ""));
    await listener.query("listen task_wake");
    const result = await reconcile(api.database.db.kysely, 15_000, api.database.logger);
    expect(result.requeued).toBe(1);
    await waitFor(() => wakes.length > 0, "the due-time wake");
    await listener.end();
    expect(wakes).toEqual([String(Number(task!.runAt!.seconds) * 1000)]);
    // A lifecycle event like any other: its history row, the status unchanged.
    expect(await historyOf(task!.id)).toEqual(["QUEUED:0", "QUEUED:0"]);
    expect((await api.client.getTaskHistory({ id: task!.id })).history.at(-1)?.details).toBe("re-enqueued: its job was missing");
    const job = await sqlQuery("select run_at from graphile_worker.jobs where key = $1", [`task:${id}`]);
    expect(job.rows).toHaveLength(1);
    expect(new Date(job.rows[0].run_at).getTime()).toBe(Number(task!.runAt!.seconds) * 1000);
    // A second pass finds nothing more to do.
    expect(await reconcile(api.database.db.kysely, 15_000, api.database.logger)).toEqual({ lost: 0, requeued: 0, cancelled: 0 });
  });

  it("racing a live worker: only one outcome is recorded per attempt", async () => {
    // A worker that heartbeats rarely, so we can make its attempt look lost while it still runs.
    const slow = await startTestWorkers(api.database, { heartbeatIntervalMs: 60_000, leaseMs: 600_000, reconcileIntervalMs: 0 });
    try {
      const { task } = await api.client.createTask({ name: "contested", type: "noop", parameters: { sleep_ms: 1_500 } });
      const id = task!.id.toString();
      await waitFor(async () => (await statusOf(task!.id)) === TaskStatus.RUNNING, "the task to start");
      await sqlQuery("update tasks set heartbeat_at = now() - interval '1 hour' where id = $1", [id]);
      // A short lease: the test cluster may have started less than 15 s ago, and leases are not
      // judged across PostgreSQL's downtime (they count from its start at the earliest).
      const metrics = new Metrics();
      const result = await reconcile(api.database.db.kysely, 100, api.database.logger, undefined, metrics);
      expect(result.lost).toBe(1);
      // Counted where the rescue happens, with the status the attempt was left in.
      expect((await metrics.rescuedAttempts.get()).values).toEqual([{ labels: { type: "noop", outcome: "retrying" }, value: 1 }]);
      // Attempt 1's worker finishes later and must not record a second outcome for it.
      await waitFor(async () => (await statusOf(task!.id)) === TaskStatus.SUCCEEDED, "attempt 2 to succeed");
      await waitFor(() => slow.inFlight() === 0, "attempt 1's late finish to be handled");
      expect(await historyOf(task!.id)).toEqual(["QUEUED:0", "RUNNING:1", "RETRYING:1", "RUNNING:2", "SUCCEEDED:2"]);
    } finally {
      await slow.stop();
    }
  }, 30_000);

  it("fencing: a worker whose heartbeat shows an attempt is no longer its own aborts it at once", async () => {
    const workers = await startTestWorkers(api.database, { reconcileIntervalMs: 0 });
    try {
      const { task } = await api.client.createTask({ name: "fenced", type: "noop", parameters: { sleep_ms: 60_000 } });
      const id = task!.id.toString();
      await waitFor(async () => (await statusOf(task!.id)) === TaskStatus.RUNNING, "attempt 1 to start");
      // Make attempt 1 look lost and settle it, as a reconciler would while this worker was silent.
      // The worker's own heartbeat (every 200 ms) may renew it in between: then try again.
      await waitFor(async () => {
        await sqlQuery("update tasks set heartbeat_at = now() - interval '1 hour' where id = $1", [id]);
        return (await reconcile(api.database.db.kysely, 100, api.database.logger)).lost === 1;
      }, "the reconciler to settle attempt 1");
      await waitFor(async () => (await sqlQuery("select 1 from tasks where id = $1 and status = 'running' and attempts = 2", [id])).rowCount === 1, "attempt 2 to start");
      // Attempt 1 (a 60 s sleep) is aborted by the next heartbeat, long before it would have ended.
      await waitFor(() => workers.inFlight() === 1, "attempt 1 to be aborted", 5_000);
      expect(await historyOf(task!.id)).toEqual(["QUEUED:0", "RUNNING:1", "RETRYING:1", "RUNNING:2"]);
      await api.client.cancelTask({ id: task!.id });
    } finally {
      await workers.stop();
    }
  });

  it("runs as a graphile-worker job: the cron entry is registered and a reconcile job does a full pass", async () => {
    const workers = await startTestWorkers(api.database, { reconcileIntervalMs: 0 });
    try {
      const crontabs = await sqlQuery("select identifier from graphile_worker._private_known_crontabs");
      expect(crontabs.rows.map((r) => r.identifier)).toContain("reconcile");
      const { task } = await api.client.createTask({ name: "orphan-2", type: "noop", runAt: { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600) } });
      const key = `task:${task!.id}`;
      await sqlQuery("select graphile_worker.remove_job($1)", [key]);
      await sqlQuery("update tasks set updated_at = now() - interval '1 minute' where id = $1", [task!.id.toString()]);
      // What the cron schedule enqueues every minute, enqueued now.
      await sqlQuery("select graphile_worker.add_job('reconcile', '{}'::json)");
      await waitFor(async () => (await sqlQuery("select 1 from graphile_worker.jobs where key = $1", [key])).rowCount === 1, "the reconcile job to re-enqueue the task");
    } finally {
      await workers.stop();
    }
  });

  it("finishes a cancellation requested of a task that went back to waiting", async () => {
    const { task } = await api.client.createTask({ name: "late-cancel", type: "noop", runAt: { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600) } });
    await sqlQuery("update tasks set cancel_requested_at = now() where id = $1", [task!.id.toString()]);
    const result = await reconcile(api.database.db.kysely, 15_000, api.database.logger);
    expect(result.cancelled).toBe(1);
    expect(await statusOf(task!.id)).toBe(TaskStatus.CANCELLED);
    expect((await sqlQuery("select count(*)::int as n from graphile_worker.jobs where key = $1", [`task:${task!.id}`])).rows[0].n).toBe(0);
  });
});
