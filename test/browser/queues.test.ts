import { beforeAll, describe, expect, it, vi } from "vitest";
import { QueueService, WorkerService } from "../../src/gen/task/v1/queue_pb.js";
import { TaskStatus } from "../../src/gen/task/v1/task_pb.js";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createTask } from "../helpers/factory.js";
import { waitFor } from "../helpers/wait.js";
import { screenshot, screenshotPhone, useDashboardSuite } from "./harness.js";

/** The queues and workers view: pause/resume a queue, set its concurrency limit, see live workers; the queue filter. */

vi.setConfig({ testTimeout: 180_000 });

const suite = useDashboardSuite({ workers: { workerQueues: ["default", "mailq"] } });
let queues: ReturnType<typeof createClient<typeof QueueService>>;
let workerClient: ReturnType<typeof createClient<typeof WorkerService>>;
beforeAll(() => {
  const transport = createConnectTransport({ baseUrl: suite.api.server.url, httpVersion: "1.1" });
  queues = createClient(QueueService, transport);
  workerClient = createClient(WorkerService, transport);
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
