import { beforeAll, describe, expect, it, vi } from "vitest";
import { RateLimitService } from "../../src/gen/task/v1/limit_pb.js";
import { QueueService, WorkerService } from "../../src/gen/task/v1/queue_pb.js";
import { TaskStatus } from "../../src/gen/task/v1/task_pb.js";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createTask } from "../helpers/factory.js";
import { waitFor } from "../helpers/wait.js";
import { screenshot, screenshotPhone, useDashboardSuite } from "./harness.js";

/** The queues and workers view: pause/resume a queue, set its concurrency limit, see live workers, each limit's use; the queue filter. */

vi.setConfig({ testTimeout: 180_000 });

const suite = useDashboardSuite({ workers: { workerQueues: ["default", "mailq", "keyq"], workerLabels: ["zone=a"] } });
let queues: ReturnType<typeof createClient<typeof QueueService>>;
let workerClient: ReturnType<typeof createClient<typeof WorkerService>>;
let limits: ReturnType<typeof createClient<typeof RateLimitService>>;
beforeAll(() => {
  const transport = createConnectTransport({ baseUrl: suite.api.server.url, httpVersion: "1.1" });
  queues = createClient(QueueService, transport);
  workerClient = createClient(WorkerService, transport);
  limits = createClient(RateLimitService, transport);
});

const url = (path: string) => `${suite.api.server.url}${path}`;
const statusOf = async (id: bigint) => (await suite.api.client.getTask({ id })).task!.status;
const until = (id: bigint, status: TaskStatus) => waitFor(async () => (await statusOf(id)) === status, `task ${id} to be ${TaskStatus[status]}`);
const queueNamed = async (name: string) => (await queues.listQueues({})).queues.find((q) => q.name === name);

describe("queues and workers", () => {
  it("pauses and resumes a queue, sets its concurrency limit, and lists the live workers", async () => {
    const first = await createTask(suite.api.client, { name: "mail one", queue: "mailq" });
    await until(first.id, TaskStatus.SUCCEEDED);
    await suite.page.goto(url("/queues"));
    const row = suite.page.locator('tr[data-queue="mailq"]');
    await row.waitFor();

    // The worker of this test, as ListWorkers has it.
    const [worker] = (await workerClient.listWorkers({})).workers;
    expect(worker).toBeDefined();
    await suite.page.locator(`tr[data-worker="${worker!.id}"]`).getByText(`pid ${worker!.pid}`).waitFor();
    // Its labels, and a task whose labels no live worker has, counted under the table.
    await suite.page.locator(`tr[data-worker="${worker!.id}"]`).getByText("zone=a").waitFor();
    const stranded = await createTask(suite.api.client, { name: "stranded", queue: "mailq", labels: { zone: "b" } });
    await suite.page.locator("[data-unmatched-labels]").getByText("zone=b (1)").waitFor();
    await suite.api.client.cancelTask({ id: stranded.id });
    await suite.page.locator("[data-unmatched-labels]").waitFor({ state: "detached" });

    await row.getByRole("button", { name: "Pause" }).click();
    await row.getByTestId("paused").waitFor();
    expect((await queueNamed("mailq"))?.paused).toBe(true);
    // A task of a paused queue waits...
    const held = await createTask(suite.api.client, { name: "mail two", queue: "mailq" });
    await row.getByTestId("waiting").getByText("1").waitFor();
    await suite.page.waitForTimeout(1_500);
    expect(await statusOf(held.id)).toBe(TaskStatus.QUEUED);
    await screenshot(suite.page, "queues-desktop");
    await screenshotPhone(suite.browser, url("/queues"), "queues-phone", (p) => p.locator('tr[data-queue="mailq"]').waitFor());
    // ...until the queue is resumed.
    await row.getByRole("button", { name: "Resume" }).click();
    await row.getByTestId("paused").waitFor({ state: "detached" });
    await until(held.id, TaskStatus.SUCCEEDED);

    // Concurrency: a number sets it, empty clears it, anything else is refused in the page.
    const limit = suite.page.getByLabel("Concurrency limit of mailq");
    await limit.fill("2");
    await row.getByRole("button", { name: "Set" }).click();
    await waitFor(async () => (await queueNamed("mailq"))?.concurrency === 2, "the limit to be 2");
    await limit.fill("two");
    await row.getByRole("button", { name: "Set" }).click();
    await row.getByRole("alert").getByText("whole number").waitFor();
    expect((await queueNamed("mailq"))?.concurrency).toBe(2);
    await limit.fill("");
    await row.getByRole("button", { name: "Set" }).click();
    await waitFor(async () => (await queueNamed("mailq"))?.concurrency === undefined, "the limit to be cleared");

    // The overview sums the workers and lists the queue.
    await suite.page.goto(url("/"));
    await suite.page.getByTestId("workers-alive").getByText(/^1 worker alive, \d+ of \d+ slots busy\.$/).waitFor();
    await suite.page.locator('[data-testid=queue-summary] tr[data-queue="mailq"]').waitFor();
  });

  it("shows each rate limit's use, and each key of a key-limited queue: running against its limit, waiting and why", async () => {
    await suite.page.goto(url("/queues"));
    await suite.page.getByText("No rate limits.").waitFor();
    // A limit of one unit an hour over a queue no worker serves, its unit spent as a claim spends it.
    await limits.setRateLimit({ limit: { name: "hourly", rate: 1, period: { seconds: 3600n }, burst: 1, queue: "rlq" } });
    await limits.setRateLimit({ limit: { name: "quick", rate: 60, period: { seconds: 60n }, burst: 10, taskType: "send_email" } });
    for (let i = 0; i < 2; i++) await suite.api.client.createTask({ name: `rl-${i}`, type: "noop", queue: "rlq" });
    await suite.api.database.db.pool.query("select task_rate_take('hourly', null)");
    // One task of acme at a time: the second of acme waits for the first's slot; bolt's runs.
    await queues.updateQueue({ name: "keyq", settings: { keyConcurrency: 1 }, updateMask: { paths: ["key_concurrency"] } });
    const long = { type: "noop", queue: "keyq", parameters: { sleep_ms: 30_000 } };
    const started = [
      await suite.api.client.createTask({ name: "acme-1", key: "acme", ...long }),
      await suite.api.client.createTask({ name: "acme-2", key: "acme", ...long }),
      await suite.api.client.createTask({ name: "bolt-1", key: "bolt", ...long }),
    ].map((r) => r.task!.id);
    await waitFor(async () => (await queueNamed("keyq"))?.running === 2n, "acme-1 and bolt-1 to run");

    const hourly = suite.page.locator('.limit-table tr[data-limit="hourly"]');
    await hourly.getByTestId("tokens").getByText("0.0").waitFor();
    expect(await hourly.getByTestId("waiting").textContent()).toBe("2");
    expect(await hourly.getByTestId("rate").textContent()).toBe("1/h");
    const quick = suite.page.locator('.limit-table tr[data-limit="quick"]');
    expect(await quick.locator('td[data-label="Scope"]').textContent()).toBe("type send_email");
    expect(await quick.getByTestId("tokens").textContent()).toBe("10.0");
    expect(await quick.getByTestId("rate").textContent()).toBe("60/min");

    const keys = suite.page.locator('[data-key-use="keyq"]');
    await keys.getByRole("heading", { name: "Keys of keyq" }).waitFor();
    const acme = keys.locator('tr[data-key="acme"]');
    await acme.getByTestId("wait-reason").getByText("key acme at its limit 1").waitFor();
    expect(await acme.getByTestId("running").textContent()).toBe("1 of 1");
    expect(await acme.getByTestId("waiting").textContent()).toBe("1");
    const bolt = keys.locator('tr[data-key="bolt"]');
    expect(await bolt.getByTestId("running").textContent()).toBe("1 of 1");
    expect(await bolt.getByTestId("wait-reason").textContent()).toBe("—");
    await screenshot(suite.page, "queues-limits-desktop");
    await screenshotPhone(suite.browser, url("/queues"), "queues-limits-phone", (p) => p.locator('[data-key-use="keyq"] tr[data-key="acme"]').waitFor());

    // Deleted, the limit leaves the page; the long tasks are cancelled.
    await limits.deleteRateLimit({ name: "quick" });
    await quick.waitFor({ state: "detached" });
    for (const id of started) await suite.api.client.cancelTask({ id });
  });

  it("filters the tasks view by queue, in the URL, with a queue column", async () => {
    const mail = await createTask(suite.api.client, { name: "in mailq", queue: "mailq" });
    const other = await createTask(suite.api.client, { name: "in default" });
    await Promise.all([until(mail.id, TaskStatus.SUCCEEDED), until(other.id, TaskStatus.SUCCEEDED)]);
    await suite.page.goto(url("/tasks"));
    await suite.page.locator(`tr[data-task-id="${other.id}"]`).waitFor();
    await suite.page.getByRole("group", { name: "Queue" }).getByRole("button", { name: "mailq" }).click();
    await suite.page.waitForURL((u) => u.search === "?queue=mailq");
    await suite.page.locator(`tr[data-task-id="${other.id}"]`).waitFor({ state: "detached" });
    await suite.page.locator(`tr[data-task-id="${mail.id}"] td[data-label="Queue"]`).getByText("mailq").waitFor();
    await suite.page.reload();
    await suite.page.locator(`tr[data-task-id="${mail.id}"]`).waitFor();
    expect(await suite.page.getByRole("group", { name: "Queue" }).getByRole("button", { name: "mailq" }).getAttribute("aria-pressed")).toBe("true");
  });
});
