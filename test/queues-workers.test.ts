import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { sql } from "kysely";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { QueueService, WorkerService } from "../src/gen/task/v1/queue_pb.js";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import type { Workers } from "../src/worker/runner.js";
import { agePriorities } from "../src/store/jobs.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { createTask, jobOf, taskRow } from "./helpers/factory.js";
import { waitFor } from "./helpers/wait.js";
import { startTestWorkers } from "./helpers/workers.js";

let api: TestApi;
let queues: Client<typeof QueueService>;
let workerService: Client<typeof WorkerService>;
const started: Workers[] = [];
beforeAll(async () => {
  api = await startTestApi();
  const transport = createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1" });
  queues = createClient(QueueService, transport);
  workerService = createClient(WorkerService, transport);
});
afterEach(async () => {
  await Promise.all(started.splice(0).map((w) => w.stop()));
});
afterAll(async () => api?.close());

const db = () => api.database.db.kysely;
async function workers(overrides: Parameters<typeof startTestWorkers>[1] = {}): Promise<Workers> {
  const w = await startTestWorkers(api.database, overrides);
  started.push(w);
  return w;
}
const status = async (id: bigint) => (await api.client.getTask({ id })).task!.status;
const waitForStatus = (id: bigint, want: TaskStatus, ms = 20_000) => waitFor(async () => (await status(id)) === want, `task ${id} to be ${TaskStatus[want]}`, ms);
/** Sleeps in the test, for "nothing happens in this time" checks where no event marks the time. */
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Runs noop tasks one after another: each is a claim round of the workers serving "default". */
async function claimRounds(n = 3): Promise<void> {
  for (let i = 0; i < n; i++) await waitForStatus((await createTask(api.client)).id, TaskStatus.SUCCEEDED);
}

describe("worker capabilities", () => {
  it("a worker without shell leaves shell tasks QUEUED (visible as unserved) and runs the rest; a shell worker then runs them", async () => {
    const plain = await workers({ enableShell: false });
    expect(plain.types).not.toContain("shell");
    const shell = await createTask(api.client, { type: "shell", parameters: { command: "echo hi" } });
    const noop = await createTask(api.client);
    await waitForStatus(noop.id, TaskStatus.SUCCEEDED);
    await claimRounds(); // the worker went on claiming, and left the shell task alone
    expect(await status(shell.id)).toBe(TaskStatus.QUEUED);
    expect((await taskRow(db(), shell.id)).attempts).toBe(0);

    const { workers: live } = await workerService.listWorkers({});
    expect(live).toHaveLength(1);
    expect(live[0]).toMatchObject({ id: plain.workerId, slots: 4, queues: ["default"], pid: process.pid });
    expect(live[0]!.types).toEqual(plain.types);
    expect(live[0]!.host).not.toBe("");
    const { types } = await api.client.listTaskTypes({});
    expect(types.find((t) => t.name === "shell")?.liveWorkers).toBe(0);
    expect(types.find((t) => t.name === "noop")?.liveWorkers).toBe(1);

    await workers({ enableShell: true });
    await waitForStatus(shell.id, TaskStatus.SUCCEEDED);
  });

  it("a worker serves only its queues: a task in another queue waits until a worker serving it starts", async () => {
    await workers();
    const other = await createTask(api.client, { queue: "batch" });
    const mine = await createTask(api.client);
    await waitForStatus(mine.id, TaskStatus.SUCCEEDED);
    await claimRounds(); // the worker went on claiming, and left the batch task alone
    expect(await status(other.id)).toBe(TaskStatus.QUEUED);
    expect((await queues.listQueues({})).queues.find((q) => q.name === "batch")).toMatchObject({ waiting: 1n, workers: 0 });
    const batch = await workers({ workerQueues: ["batch", "default"] });
    expect(batch.queues).toEqual(["batch", "default"]);
    await waitForStatus(other.id, TaskStatus.SUCCEEDED);
  });
});

describe("paused queues", () => {
  it("pausing stops new starts at once while a running attempt finishes; resuming starts the rest promptly", async () => {
    await workers({ workerConcurrency: 4 });
    const long = await createTask(api.client, { type: "shell", parameters: { command: "sleep 1.5" }, queue: "pq" });
    // Not in the worker's queues yet: the worker serves "default" only, so start one that serves pq,
    // polling once a minute: only the resume's notification can start the held tasks in time.
    await workers({ workerQueues: ["pq"], workerConcurrency: 4, pollIntervalMs: 60_000 });
    await waitForStatus(long.id, TaskStatus.RUNNING);
    await queues.pauseQueue({ name: "pq" });
    const held = await Promise.all([1, 2, 3].map(() => createTask(api.client, { queue: "pq" })));
    await pause(1_000);
    for (const t of held) expect(await status(t.id)).toBe(TaskStatus.QUEUED);
    await waitForStatus(long.id, TaskStatus.SUCCEEDED);
    await pause(500);
    for (const t of held) expect((await taskRow(db(), t.id)).attempts).toBe(0);
    // Other queues are not held up.
    const free = await createTask(api.client);
    await waitForStatus(free.id, TaskStatus.SUCCEEDED, 5_000);

    const resumedAt = Date.now();
    await queues.resumeQueue({ name: "pq" });
    // Woken by NOTIFY, well under the minute's poll (how soon: npm run bench, "queue resume").
    for (const t of held) await waitForStatus(t.id, TaskStatus.SUCCEEDED, 30_000);
    const startedAt = await Promise.all(held.map(async (t) => (await taskRow(db(), t.id)).started_at!.getTime()));
    expect(Math.max(...startedAt) - resumedAt).toBeLessThan(30_000);
  });
});

describe("limited queues", () => {
  it("a limited queue that had nothing to start is asked again when a task arrives, not at the next poll", async () => {
    await api.database.db.pool.query("insert into queues (name, concurrency) values ('lq', 2) on conflict (name) do update set concurrency = 2, paused = false");
    // A poll of a minute: only the jobs:insert notification can wake the limited queue in time.
    await workers({ workerQueues: ["default", "lq"], workerConcurrency: 4, pollIntervalMs: 60_000 });
    // Default tasks drain while lq is empty: each claim round finds nothing in lq, which is then left alone.
    const batch = await Promise.all(Array.from({ length: 20 }, () => createTask(api.client)));
    for (const t of batch) await waitForStatus(t.id, TaskStatus.SUCCEEDED);
    await pause(200);
    const createdAt = Date.now();
    const limited = await Promise.all([1, 2, 3].map(() => createTask(api.client, { queue: "lq" })));
    // Well under the minute's poll (how soon: npm run bench, "limited queue create → start").
    for (const t of limited) await waitForStatus(t.id, TaskStatus.SUCCEEDED, 30_000);
    const startedAt = await Promise.all(limited.map(async (t) => (await taskRow(db(), t.id)).started_at!.getTime()));
    expect(Math.max(...startedAt) - createdAt).toBeLessThan(30_000);
  });
});

describe("priority that holds", () => {
  it("with the only slot busy, tasks created -10, -5, 0, 5, 10 then start highest first", async () => {
    await workers({ workerConcurrency: 1 });
    const blocker = await createTask(api.client, { type: "shell", parameters: { command: "sleep 1" }, priority: 100 });
    await waitForStatus(blocker.id, TaskStatus.RUNNING);
    const tasks = [];
    for (const priority of [-10, -5, 0, 5, 10]) {
      tasks.push(await createTask(api.client, { priority }));
      await pause(30); // each one arrives on its own (a local queue would have fetched each as it came)
    }
    for (const t of tasks) await waitForStatus(t.id, TaskStatus.SUCCEEDED);
    const order = await Promise.all(tasks.map(async (t) => ({ priority: t.priority, started: (await taskRow(db(), t.id)).started_at!.getTime() })));
    order.sort((a, b) => a.started - b.started);
    expect(order.map((o) => o.priority)).toEqual([10, 5, 0, -5, -10]);
  });

  it("aging: a job due for longer gets a better effective priority (priority + minutes waited)", async () => {
    const old = await createTask(api.client, { priority: -10, queue: "aging" });
    const fresh = await createTask(api.client, { priority: -10, queue: "aging" });
    // As if the first had been due for 12.5 minutes (aging step 60 s).
    await sql`update tasks set run_at = now() - interval '750 seconds' where id = ${String(old.id)}`.execute(db());
    await sql`update graphile_worker._private_jobs set run_at = now() - interval '750 seconds' where key = ${`task:${old.id}`}`.execute(db());
    expect((await jobOf(db(), old.id))?.priority).toBe(10);
    expect(await agePriorities(db(), 60_000)).toBeGreaterThanOrEqual(1);
    // graphile-worker's priority is lower-first: -(-10 + 12) = -2.
    expect((await jobOf(db(), old.id))?.priority).toBe(-2);
    expect((await jobOf(db(), fresh.id))?.priority).toBe(10);
    // Idempotent: a second pass changes nothing more.
    await agePriorities(db(), 60_000);
    expect((await jobOf(db(), old.id))?.priority).toBe(-2);
  });
});
