import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueueService } from "../src/gen/task/v1/queue_pb.js";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";
import { expectConnectError, rowCounts, taskRequest } from "./helpers/factory.js";
import { alive, startWorkerProcess } from "./helpers/fault-workers.js";
import type { CliProcess } from "./helpers/process.js";
import { waitFor } from "./helpers/wait.js";

// Expiry (issue 27 item 5): a task not started by its deadline ends EXPIRED within a second of it,
// is never started afterwards, and can be retried with a new deadline. A real worker process
// (task-cli serve) enforces it; the API is served over HTTP.
let api: TestApi;
let worker: CliProcess;
const QUEUES = ["exp-held", "exp-default", "exp-run"];
beforeAll(async () => {
  api = await startTestApi();
  worker = await startWorkerProcess(api.database.db.pool, api.database.url, {}, ["-n", "4", "--queues", QUEUES.join(",")]);
}, 120_000);
afterAll(async () => {
  if (worker && alive(worker)) {
    worker.child.kill("SIGTERM");
    await worker.exited;
  }
  await api?.close();
});

const queues = () => createClient(QueueService, createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1" }));
const seconds = (s: number) => create(DurationSchema, { seconds: BigInt(Math.trunc(s)), nanos: Math.round((s % 1) * 1e9) });

/** The tasks' deadlines and when their expiry was recorded, on the database's clock. */
async function expiryTimes(ids: bigint[]) {
  const { rows } = await api.database.db.pool.query(
    `select id::text, status::text, attempts, (extract(epoch from finished_at - expires_at) * 1000)::float8 as late_ms, started_at
     from tasks where id = any($1::bigint[]) order by id`,
    [ids.map(String)],
  );
  return rows as { id: string; status: string; attempts: number; late_ms: number; started_at: Date | null }[];
}

describe("tasks that expire", () => {
  it("a task not started by its deadline ends EXPIRED within a second of it, says why, and never starts later", async () => {
    await queues().pauseQueue({ name: "exp-held" });
    const { tasks } = await api.client.createTasks({
      tasks: Array.from({ length: 5 }, (_, i) => ({ name: `held-${i}`, type: "noop", queue: "exp-held", expireAfter: seconds(1.5) })),
    });
    expect(tasks.every((t) => t.expiresAt !== undefined && t.expireAfter?.seconds === 1n)).toBe(true);
    const ids = tasks.map((t) => t.id);
    await waitFor(async () => (await expiryTimes(ids)).every((t) => t.status === "expired"), "the held tasks to expire", 10_000);
    for (const t of await expiryTimes(ids)) {
      expect(t.attempts).toBe(0);
      expect(t.late_ms).toBeGreaterThanOrEqual(0);
      expect(t.late_ms).toBeLessThan(1_000);
    }
    const { history: entries } = await api.client.getTaskHistory({ id: ids[0]! });
    expect(entries.at(-1)).toMatchObject({ status: TaskStatus.EXPIRED, attempt: 0 });
    expect(entries.at(-1)!.details).toMatch(/^expired: not started by its deadline \S+ \(expire after 1\.5 s\)$/);
    // Listed and counted as EXPIRED.
    const listed = await api.client.listTasks({ statuses: [TaskStatus.EXPIRED], queues: ["exp-held"] });
    expect(listed.tasks.map((t) => t.id).sort()).toEqual([...ids].sort());
    // Resumed, the queue starts none of them: each stays EXPIRED, never started.
    await queues().resumeQueue({ name: "exp-held" });
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    for (const t of await expiryTimes(ids)) expect(t).toMatchObject({ status: "expired", attempts: 0, started_at: null });
  });

  it("a task that starts in time runs as usual; its deadline stays on record", async () => {
    const task = (await api.client.createTask({ name: "in-time", type: "noop", queue: "exp-run", expireAfter: seconds(60) })).task!;
    await waitFor(async () => (await api.client.getTask({ id: task.id })).task?.status === TaskStatus.SUCCEEDED, "the task to succeed", 20_000);
    expect((await api.client.getTask({ id: task.id })).task?.expiresAt).toBeDefined();
  });

  it("a queue's default expiry applies to tasks created without one; a retry gives a new deadline and runs", async () => {
    await queues().pauseQueue({ name: "exp-default" });
    const set = await runCli(["--address", api.server.url, "queue", "set", "exp-default", "--expire-after", "1s"]);
    expect(set.stderr).toBe("");
    expect(set.stdout).toMatch(/Expiry\s+tasks not started 1s after they are due end EXPIRED/);
    const created = await runCli(["--address", api.server.url, "-o", "json", "task", "create", "defaulted", "--type", "noop", "--queue", "exp-default"]);
    expect(created.code, created.stderr).toBe(0);
    const id = BigInt(JSON.parse(created.stdout).task.id);
    await waitFor(async () => (await api.client.getTask({ id })).task?.status === TaskStatus.EXPIRED, "the defaulted task to expire", 10_000);
    const shown = await runCli(["--address", api.server.url, "task", "get", "--id", String(id)]);
    expect(shown.stdout).toMatch(/Status\s+EXPIRED/);
    expect(shown.stdout).toMatch(/Expiry\s+1s after due: expired /);
    // The queue is running again and its default is removed; the retried task gets a fresh deadline and starts in time.
    await queues().resumeQueue({ name: "exp-default" });
    const unset = await runCli(["--address", api.server.url, "queue", "set", "exp-default", "--no-expiry"]);
    expect(unset.stdout).toMatch(/Expiry\s+none/);
    const retried = (await api.client.retryTask({ id })).task!;
    expect(retried.status).toBe(TaskStatus.QUEUED);
    expect(Number(retried.expiresAt!.seconds)).toBeGreaterThanOrEqual(Math.floor(Date.now() / 1000) - 1);
    await waitFor(async () => (await api.client.getTask({ id })).task?.status === TaskStatus.SUCCEEDED, "the retried task to succeed", 20_000);
  });

  it("an expiry outside 1s-366d or not whole milliseconds is refused with InvalidArgument and writes nothing", async () => {
    const before = await rowCounts(api.database.db.kysely);
    for (const bad of [seconds(0.5), seconds(0), seconds(367 * 24 * 3600), create(DurationSchema, { seconds: 2n, nanos: 1 })]) {
      await expectConnectError(api.client.createTask(taskRequest({ expireAfter: bad } as never)), Code.InvalidArgument, /expire_after: must be a whole number of milliseconds from 1s to 366d/);
    }
    await expectConnectError(
      api.client.createTasks({ tasks: [taskRequest(), taskRequest({ expireAfter: seconds(0) } as never)] }),
      Code.InvalidArgument,
      /tasks\[1\]\.expire_after/,
    );
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
    await expectConnectError(
      queues().updateQueue({ name: "exp-bad", settings: { expireAfter: seconds(0.2) }, updateMask: { paths: ["expire_after"] } }),
      Code.InvalidArgument,
      /settings\.expire_after/,
    );
    expect((await queues().listQueues({})).queues.some((q) => q.name === "exp-bad")).toBe(false);
    const cli = await runCli(["--address", api.server.url, "queue", "set", "exp-bad", "--expire-after", "5m", "--no-expiry"]);
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toMatch(/--expire-after and --no-expiry cannot be combined/);
  });
});
