import { Code, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueueService, WorkerService } from "../src/gen/task/v1/queue_pb.js";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";
import { createTask, expectConnectError, rowCounts, taskRequest } from "./helpers/factory.js";

let api: TestApi;
let queues: Client<typeof QueueService>;
let workers: Client<typeof WorkerService>;
beforeAll(async () => {
  api = await startTestApi();
  const transport = createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1" });
  queues = createClient(QueueService, transport);
  workers = createClient(WorkerService, transport);
});
afterAll(async () => api?.close());

const db = () => api.database.db.kysely;
const settingsRows = async () => (await db().selectFrom("queues").selectAll().orderBy("name").execute()).map((q) => ({ name: q.name, concurrency: q.concurrency, paused: q.paused }));

describe("queue on CreateTask", () => {
  it("defaults to 'default' and keeps a named queue on the task, in ListTasks filters and in the counts", async () => {
    const plain = await createTask(api.client);
    expect(plain.queue).toBe("default");
    const mail = await createTask(api.client, { queue: "emails" });
    expect(mail.queue).toBe("emails");
    expect((await api.client.getTask({ id: mail.id })).task?.queue).toBe("emails");

    const listed = await api.client.listTasks({ queues: ["emails"] });
    expect(listed.tasks.map((t) => t.id)).toEqual([mail.id]);
    expect(listed.totalCount).toBe(1n);
    expect(listed.totalCountExact).toBe(true);

    const counts = await api.client.getTaskStatusCounts({});
    const queued = (queue: string) => counts.queueCounts.find((c) => c.queue === queue && c.status === TaskStatus.QUEUED)?.count;
    expect(queued("emails")).toBe(1n);
    expect(queued("default")).toBeGreaterThanOrEqual(1n);
    // Ordered by queue, then status.
    expect(counts.queueCounts.map((c) => c.queue)).toEqual([...counts.queueCounts.map((c) => c.queue)].sort());
  });

  it("refuses bad queue names with InvalidArgument and writes nothing (one bad task spoils the batch)", async () => {
    const before = await rowCounts(db());
    for (const queue of ["Emails", "-x", "a b", "x".repeat(65), "a:b", "émoji"]) {
      await expectConnectError(api.client.createTask(taskRequest({ queue })), Code.InvalidArgument, /queue/);
    }
    await expectConnectError(api.client.createTasks({ tasks: [taskRequest({ queue: "ok" }), taskRequest({ queue: "Not OK" })] }), Code.InvalidArgument, /tasks\[1\]\.queue/);
    await expectConnectError(api.client.listTasks({ queues: ["BAD"] }), Code.InvalidArgument, /queues\[0\]/);
    expect(await rowCounts(db())).toEqual(before);
  });
});

describe("QueueService", () => {
  it("lists queues with tasks, their waiting counts and oldest waiting age; a queue no worker serves shows 0 workers", async () => {
    await createTask(api.client, { queue: "reports" });
    const { queues: list } = await queues.listQueues({});
    const reports = list.find((q) => q.name === "reports");
    expect(reports).toMatchObject({ name: "reports", paused: false, running: 0n, waiting: 1n, workers: 0 });
    expect(reports?.concurrency).toBeUndefined();
    expect(reports?.oldestWaitingAge).toBeDefined();
    expect(list.map((q) => q.name)).toEqual([...list.map((q) => q.name)].sort());
  });

  it("sets and removes a concurrency limit, pauses and resumes", async () => {
    const set = await queues.updateQueue({ name: "reports", settings: { concurrency: 2 }, updateMask: { paths: ["concurrency"] } });
    expect(set.queue).toMatchObject({ name: "reports", concurrency: 2, paused: false, waiting: 1n });
    const paused = await queues.pauseQueue({ name: "reports" });
    expect(paused.queue).toMatchObject({ paused: true, concurrency: 2 });
    // A queue without tasks can be configured ahead of time.
    expect((await queues.pauseQueue({ name: "later" })).queue).toMatchObject({ name: "later", paused: true, waiting: 0n });
    const resumed = await queues.resumeQueue({ name: "reports" });
    expect(resumed.queue).toMatchObject({ paused: false, concurrency: 2 });
    const unlimited = await queues.updateQueue({ name: "reports", settings: {}, updateMask: { paths: ["concurrency"] } });
    expect(unlimited.queue?.concurrency).toBeUndefined();
    expect(await settingsRows()).toEqual([
      { name: "later", concurrency: null, paused: true },
      { name: "reports", concurrency: null, paused: false },
    ]);
  });

  it("refuses unknown settings, negative limits, bad names and an empty mask; nothing changes", async () => {
    const before = await settingsRows();
    await expectConnectError(queues.updateQueue({ name: "reports", settings: { concurrency: -1 }, updateMask: { paths: ["concurrency"] } }), Code.InvalidArgument, /settings\.concurrency/);
    await expectConnectError(queues.updateQueue({ name: "reports", settings: { concurrency: 3 }, updateMask: { paths: ["concurrency", "speed"] } }), Code.InvalidArgument, /unknown queue setting "speed"/);
    await expectConnectError(queues.updateQueue({ name: "reports", settings: { paused: true } }), Code.InvalidArgument, /update_mask/);
    await expectConnectError(queues.updateQueue({ name: "Bad Name", settings: { paused: true }, updateMask: { paths: ["paused"] } }), Code.InvalidArgument, /name/);
    await expectConnectError(queues.pauseQueue({ name: "" }), Code.InvalidArgument, /name: is required/);
    await expectConnectError(queues.resumeQueue({ name: "UPPER" }), Code.InvalidArgument, /name/);
    expect(await settingsRows()).toEqual(before);
  });
});

describe("WorkerService and ListTaskTypes without workers", () => {
  it("lists no workers, and every type as served by none", async () => {
    expect((await workers.listWorkers({})).workers).toEqual([]);
    const { types } = await api.client.listTaskTypes({});
    expect(types.length).toBeGreaterThan(0);
    expect(types.every((t) => t.liveWorkers === 0)).toBe(true);
  });
});

describe("task-cli queue and workers", () => {
  const cli = (...args: string[]) => runCli(["--address", api.server.url, ...args]);

  it("queue set / pause / resume / list", async () => {
    const set = await cli("queue", "set", "cli-q", "--concurrency", "3");
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toMatch(/Limit\s+3/);
    expect((await cli("queue", "pause", "cli-q")).stdout).toMatch(/Paused\s+yes/);
    const list = await cli("queue", "list");
    expect(list.stdout).toMatch(/cli-q\s+yes\s+3\s+0\s+0\s+-\s+0 \(none serves it\)/);
    expect((await cli("queue", "resume", "cli-q")).stdout).toMatch(/Paused\s+no/);
    expect((await cli("queue", "set", "cli-q", "--unlimited")).stdout).toMatch(/Limit\s+unlimited/);
    const json = JSON.parse((await cli("-o", "json", "queue", "list")).stdout) as { queues: { name: string }[] };
    expect(json.queues.map((q) => q.name)).toContain("cli-q");
  });

  it("bad input: clear errors, non-zero exit, nothing changed", async () => {
    const before = await settingsRows();
    const negative = await cli("queue", "set", "cli-q", "--concurrency", "-1");
    expect(negative.code).not.toBe(0);
    expect(negative.stderr).toMatch(/--concurrency/);
    const unknown = await cli("queue", "set", "cli-q", "--speed", "9");
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/unknown option '--speed'/);
    const none = await cli("queue", "set", "cli-q");
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/--concurrency N or --unlimited/);
    const badName = await cli("queue", "pause", "No Such");
    expect(badName.code).not.toBe(0);
    expect(badName.stderr).toMatch(/not a queue name/);
    expect(await settingsRows()).toEqual(before);
  });

  it("workers says when no worker runs a type", async () => {
    const res = await cli("workers");
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/no live workers/);
    expect(res.stdout).toMatch(/no live worker runs: .*noop/);
  });

  it("task create --queue and task list --queue", async () => {
    const created = await cli("task", "create", "in-q", "--type", "noop", "--queue", "cli-q");
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/Queue\s+cli-q/);
    const listed = await cli("task", "list", "--queue", "cli-q");
    expect(listed.stdout).toMatch(/in-q/);
    expect(listed.stdout).toMatch(/1 shown/);
  });
});
