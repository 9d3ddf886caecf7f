import { describe, expect, it, vi } from "vitest";
import { TaskStatus } from "../../src/gen/task/v1/task_pb.js";
import { createTask } from "../helpers/factory.js";
import { waitFor } from "../helpers/wait.js";
import { screenshot, useDashboardSuite } from "./harness.js";

// A browser, a server and workers on two shared cores: allow for a slow machine.
vi.setConfig({ testTimeout: 180_000 });

const suite = useDashboardSuite();

describe("progress in the dashboard", () => {
  it("the list shows a running task's bar and message, and its page the rate and time left", async () => {
    // 20 reports over 40 s: one every 2 s, so the bar moves while the page is open.
    const task = await createTask(suite.api.client, { name: "importing rows", parameters: { sleep_ms: 40_000, progress_steps: 20 } });
    await waitFor(async () => {
      const t = (await suite.api.client.getTask({ id: task.id })).task!;
      return t.status === TaskStatus.RUNNING && t.progress !== undefined;
    }, "the task to report progress");

    await suite.page.goto(`${suite.api.server.url}/tasks`);
    const row = suite.page.locator(`tr[data-task-id="${task.id}"]`);
    const bar = row.getByRole("progressbar");
    await bar.waitFor();
    const first = Number(await bar.getAttribute("value"));
    expect(first).toBeGreaterThan(0);
    expect(await row.getByTestId("task-progress").textContent()).toMatch(/^\d+% step \d+ of 20$/);
    // It moves with the stream, without a reload.
    await waitFor(async () => Number(await bar.getAttribute("value")) > first, "the list's bar to move", 20_000);
    await screenshot(suite.page, "progress-list");

    await suite.page.goto(`${suite.api.server.url}/tasks/${task.id}`);
    const detail = suite.page.getByTestId("task-progress");
    await detail.waitFor();
    await waitFor(async () => /%\/s · about \S+ left/.test((await detail.textContent()) ?? ""), "the rate and the time left", 20_000);
    expect(await detail.textContent()).toMatch(/^\d+% step \d+ of 20/);
    await screenshot(suite.page, "progress-detail");
    await suite.api.client.cancelTask({ id: task.id });
  });
});
