import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { ScheduleService } from "../../src/gen/task/v1/schedule_pb.js";
import { waitFor } from "../helpers/wait.js";
import { screenshot, screenshotPhone, useDashboardSuite } from "./harness.js";

// A browser, a server and workers on two shared cores: allow for a slow machine.
vi.setConfig({ testTimeout: 180_000 });

const suite = useDashboardSuite();
let schedules: Client<typeof ScheduleService>;
beforeAll(() => {
  schedules = createClient(ScheduleService, createConnectTransport({ baseUrl: suite.api.server.url, httpVersion: "1.1" }));
});

const url = (path: string) => `${suite.api.server.url}${path}`;
const pausedInApi = async (name: string) => (await schedules.getSchedule({ name })).schedule!.spec!.paused;

describe("schedules", () => {
  it("lists a schedule with its next run; pauses, resumes and runs it from the page", async () => {
    const created = (
      await schedules.createSchedule({ spec: { name: "nightly report", cron: "0 7 * * *", timeZone: "Europe/Paris", task: { type: "noop", parameters: { sleep_ms: 100 } } } })
    ).schedule!;
    await schedules.createSchedule({ spec: { name: "heartbeat", cron: "*/5 * * * *", task: { type: "noop" }, paused: true } });

    // Straight to the URL: the server answers /schedules with the dashboard, and the nav marks it.
    await suite.page.goto(url("/schedules"));
    const row = suite.page.locator('tr[data-schedule="nightly report"]');
    await row.waitFor();
    await row.getByText("0 7 * * *").waitFor();
    await row.getByText("Europe/Paris").waitFor();
    await row.getByText("noop").waitFor();
    const next = await row.getByTestId("next-run").locator("time").getAttribute("datetime");
    expect(new Date(next!).getTime()).toBeGreaterThan(Date.now());
    expect(await row.getByTestId("paused").count()).toBe(0);
    await suite.page.locator('tr[data-schedule="heartbeat"]').getByTestId("paused").waitFor();
    expect(await suite.page.getByRole("link", { name: "Schedules" }).getAttribute("aria-current")).toBe("page");

    // Pause: the page says so, and so does the API; no next run while paused.
    await row.getByRole("button", { name: "Pause" }).click();
    await row.getByTestId("paused").waitFor();
    await row.getByRole("button", { name: "Resume" }).waitFor();
    expect(await pausedInApi("nightly report")).toBe(true);
    expect(await row.getByTestId("next-run").locator("time").count()).toBe(0);

    // Resume: a next run again.
    await row.getByRole("button", { name: "Resume" }).click();
    await row.getByTestId("paused").waitFor({ state: "detached" });
    expect(await pausedInApi("nightly report")).toBe(false);
    await row.getByTestId("next-run").locator("time").waitFor();

    // Run now asks first; backing out creates nothing.
    await row.getByRole("button", { name: "Run now" }).click();
    await row.getByRole("button", { name: "Not now" }).click();
    await row.getByRole("button", { name: "Run now" }).click();
    await row.getByRole("button", { name: "Yes, run it" }).click();
    const startedLink = row.getByRole("link", { name: /^task #\d+$/ });
    await startedLink.waitFor();
    const taskId = /#(\d+)/.exec((await startedLink.textContent())!)![1]!;
    const task = (await suite.api.client.getTask({ id: BigInt(taskId) })).task!;
    expect(task.scheduleId).toBe(created.id);
    expect(task.name).toBe("nightly report");
    // The last run shows up with its task's status.
    await row.getByRole("link", { name: `Last task #${taskId}` }).getByText("SUCCEEDED").waitFor();
    await screenshot(suite.page, "schedules-desktop");
    await screenshotPhone(suite.browser, url("/schedules"), "schedules-phone", (p) => p.locator('tr[data-schedule="nightly report"]').getByText("SUCCEEDED").waitFor());

    // The schedule's name links to its tasks: the tasks view filtered by schedule id.
    await row.getByRole("link", { name: "nightly report" }).click();
    await suite.page.waitForURL((u) => u.pathname === "/tasks" && u.search === `?schedule=${created.id}`);
    await suite.page.locator(`tr[data-task-id="${taskId}"]`).waitFor();
    await waitFor(async () => (await suite.page.locator("tr[data-task-id]").count()) === 1, "only the schedule's task");
    await suite.page.getByRole("group", { name: "Schedule" }).getByRole("button", { name: `#${created.id}` }).waitFor();
    await suite.page.reload();
    await suite.page.locator(`tr[data-task-id="${taskId}"]`).waitFor();
  });
});
