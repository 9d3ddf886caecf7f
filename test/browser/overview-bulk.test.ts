import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Page } from "playwright-core";
import { describe, expect, it, vi } from "vitest";
import { TaskStatus } from "../../src/gen/task/v1/task_pb.js";
import { createTask } from "../helpers/factory.js";
import { waitFor } from "../helpers/wait.js";
import { screenshot, screenshotPhone, useDashboardSuite } from "./harness.js";

/** The overview's throughput and per-type counts; the tasks view's name and time filters; selection and bulk actions. */

vi.setConfig({ testTimeout: 180_000 });

const suite = useDashboardSuite();

const url = (path: string) => `${suite.api.server.url}${path}`;
const statusOf = async (id: bigint) => (await suite.api.client.getTask({ id })).task!.status;
const until = (id: bigint, status: TaskStatus) => waitFor(async () => (await statusOf(id)) === status, `task ${id} to be ${TaskStatus[status]}`);
const later = () => timestampFromDate(new Date(Date.now() + 3_600_000));
const rowIds = (p: Page) => p.locator("tr[data-task-id]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-task-id")));

describe("overview", () => {
  it("shows the last hour's outcomes as GetTaskThroughput counts them, and counts per type", async () => {
    const ok = await Promise.all([1, 2, 3].map((i) => createTask(suite.api.client, { name: `ok ${i}` })));
    const bad = await createTask(suite.api.client, { name: "bad", parameters: { fail: "boom" }, maxAttempts: 1 });
    const shell = await createTask(suite.api.client, { name: "waits", type: "shell", parameters: { command: "true" }, runAt: later() });
    await suite.api.client.cancelTask({ id: shell.id });
    await Promise.all([...ok.map((t) => until(t.id, TaskStatus.SUCCEEDED)), until(bad.id, TaskStatus.FAILED)]);

    await suite.page.goto(url("/"));
    const shown = async () => {
      const values: Record<string, string> = {};
      for (const el of await suite.page.locator("[data-testid=throughput-totals] [data-outcome]").all()) values[(await el.getAttribute("data-outcome"))!] = ((await el.textContent()) ?? "").replace(/\D/g, "");
      return values;
    };
    const expected = async () => {
      const { buckets } = await suite.api.client.getTaskThroughput({});
      const sum = (k: "succeeded" | "failed" | "cancelled" | "retried") => buckets.reduce((n, b) => n + b[k], 0n).toString();
      return { succeeded: sum("succeeded"), failed: sum("failed"), cancelled: sum("cancelled"), retried: sum("retried") };
    };
    const agreed = await waitFor(async () => {
      const [a, b] = await Promise.all([shown(), expected()]);
      return JSON.stringify(a) === JSON.stringify(b) ? a : undefined;
    }, "the chart's totals to match GetTaskThroughput");
    expect(agreed).toEqual({ succeeded: "3", failed: "1", cancelled: "1", retried: "0" });
    expect(await suite.page.locator(".throughput-chart rect[fill^='var(--succeeded)']").count()).toBeGreaterThan(0);

    // Per type: the same numbers as type_counts, each linking to its filtered list.
    const noop = suite.page.locator('[data-testid=type-counts] tr[data-type="noop"]');
    await noop.locator('[data-status="SUCCEEDED"]', { hasText: "3" }).waitFor();
    await noop.locator('[data-status="FAILED"]', { hasText: "1" }).waitFor();
    await suite.page.locator('[data-testid=type-counts] tr[data-type="shell"] [data-status="CANCELLED"]', { hasText: "1" }).waitFor();
    await screenshot(suite.page, "overview-chart-desktop");
    await screenshotPhone(suite.browser, url("/"), "overview-chart-phone", (p) => p.locator("[data-testid=type-counts]").waitFor());
    await noop.locator('[data-status="FAILED"] a').click();
    await suite.page.waitForURL((u) => u.search === "?status=failed&type=noop");
    await suite.page.locator(`tr[data-task-id="${bad.id}"]`).waitFor();
  });
});

describe("tasks view", () => {
  it("searches names by prefix and filters by creation time, all in the URL and across a reload", async () => {
    // One task created two hours ago, as if from a longer history (with the tasks before it: ids
    // and creation times keep one order, as they do in real use)...
    const old = await createTask(suite.api.client, { name: "nightly-old", runAt: later() });
    await suite.api.database.db.kysely.updateTable("tasks").set({ created_at: new Date(Date.now() - 2 * 3_600_000) }).where("id", "<=", String(old.id)).execute();
    // ...and new ones.
    const nightly = await suite.api.client.createTasks({ tasks: [1, 2].map((i) => ({ name: `nightly-${i}`, type: "noop", runAt: later() })) });
    const other = await createTask(suite.api.client, { name: "weekly-1", runAt: later() });

    await suite.page.goto(url("/tasks"));
    await suite.page.getByLabel("Task id or name").fill("nightly-");
    await suite.page.getByRole("button", { name: "Search" }).click();
    await suite.page.waitForURL((u) => u.search === "?name=nightly-");
    await suite.page.locator("table.task-table:not([aria-busy=true])").waitFor();
    await waitFor(async () => (await rowIds(suite.page)).length === 3, "the three nightly tasks");
    expect(await rowIds(suite.page)).toEqual([...nightly.tasks.map((t) => t.id).reverse(), old.id].map(String));
    expect(await suite.page.locator(`tr[data-task-id="${other.id}"]`).count()).toBe(0);

    // The last hour: the old one drops out, and the range lands in the URL in UTC.
    await suite.page.getByRole("button", { name: "Last hour" }).click();
    await suite.page.waitForURL((u) => /^\?name=nightly-&after=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/.test(u.search));
    await suite.page.locator(`tr[data-task-id="${old.id}"]`).waitFor({ state: "detached" });
    await suite.page.getByTestId("result-count").getByText("2 tasks match these filters").waitFor();
    const filtered = suite.page.url();
    await suite.page.reload();
    await suite.page.getByTestId("result-count").getByText("2 tasks match these filters").waitFor();
    expect(suite.page.url()).toBe(filtered);
    expect(await suite.page.getByLabel("Task id or name").inputValue()).toBe("nightly-");
    expect(await suite.page.getByLabel("after").inputValue()).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d$/);

    // Before an hour ago: only the old one.
    const hourAgo = new Date(Date.now() - 3_600_000);
    await suite.page.goto(url(`/tasks?name=nightly-&before=${hourAgo.toISOString()}`));
    await waitFor(async () => JSON.stringify(await rowIds(suite.page)) === JSON.stringify([String(old.id)]), "only the old nightly task");
    await screenshot(suite.page, "tasks-filtered-desktop");
    await screenshotPhone(suite.browser, url(`/tasks?name=nightly-`), "tasks-filtered-phone", (p) => p.locator("tr[data-task-id]").first().waitFor());
  });

  it("selects rows and cancels them after a confirmation that names the count; finished ones are left alone", async () => {
    const waiting = await suite.api.client.createTasks({ tasks: [1, 2, 3].map((i) => ({ name: `bulk-${i}`, type: "noop", runAt: later() })) });
    const finished = await createTask(suite.api.client, { name: "bulk-done" });
    await until(finished.id, TaskStatus.SUCCEEDED);
    await suite.page.goto(url("/tasks?name=bulk-"));
    await waitFor(async () => (await rowIds(suite.page)).length === 4, "the four bulk tasks");

    // Select the page, then drop one: 3 selected, of which 2 can be cancelled.
    await suite.page.getByLabel("Select every task on this page").check();
    await suite.page.getByTestId("selected-count").getByText("4 tasks selected").waitFor();
    await suite.page.getByLabel(`Select task #${waiting.tasks[0]!.id}`).uncheck();
    await suite.page.getByTestId("selected-count").getByText("3 tasks selected").waitFor();
    expect(await suite.page.getByLabel("Select every task on this page").evaluate((el) => (el as HTMLInputElement).indeterminate)).toBe(true);
    await suite.page.getByRole("region", { name: "Selected tasks" }).getByRole("button", { name: "Cancel 2" }).click();

    const dialog = suite.page.getByRole("dialog", { name: "Cancel 2 tasks?" });
    await dialog.waitFor();
    await dialog.getByText("1 of the selected tasks cannot be cancelled").waitFor();
    await screenshot(suite.page, "tasks-bulk-confirm-desktop");
    // Backing out changes nothing.
    await suite.page.keyboard.press("Escape");
    await dialog.waitFor({ state: "detached" });
    expect(await statusOf(waiting.tasks[1]!.id)).toBe(TaskStatus.QUEUED);

    await suite.page.getByRole("region", { name: "Selected tasks" }).getByRole("button", { name: "Cancel 2" }).click();
    await dialog.getByRole("button", { name: "Cancel 2" }).click();
    await suite.page.getByTestId("bulk-outcome").getByText("2 tasks cancelled").waitFor();
    expect(await Promise.all(waiting.tasks.map((t) => statusOf(t.id)))).toEqual([TaskStatus.QUEUED, TaskStatus.CANCELLED, TaskStatus.CANCELLED]);
    expect(await statusOf(finished.id)).toBe(TaskStatus.SUCCEEDED);
    // The rows show it without a reload, and the selection is gone.
    await suite.page.locator(`tr[data-task-id="${waiting.tasks[2]!.id}"]`).getByText("CANCELLED").waitFor();
    expect(await suite.page.getByTestId("selected-count").count()).toBe(0);

    // Retry them back, the same way.
    for (const t of waiting.tasks.slice(1)) await suite.page.getByLabel(`Select task #${t.id}`).check();
    await suite.page.getByRole("region", { name: "Selected tasks" }).getByRole("button", { name: "Retry 2" }).click();
    await suite.page.getByRole("dialog", { name: "Retry 2 tasks?" }).getByRole("button", { name: "Retry 2" }).click();
    await suite.page.getByTestId("bulk-outcome").getByText("2 tasks retried").waitFor();
    expect(await statusOf(waiting.tasks[1]!.id)).not.toBe(TaskStatus.CANCELLED);
  });

  it("selects everything matching a filter beyond the page, with the server's dry-run count, then pauses and resumes it", async () => {
    const since = new Date(Date.now() - 1_000);
    const many = await suite.api.client.createTasks({ tasks: Array.from({ length: 25 }, (_, i) => ({ name: `many-${i}`, type: "noop", runAt: later() })) });
    await suite.page.goto(url(`/tasks?status=queued&after=${since.toISOString()}&size=20`));
    await suite.page.getByTestId("result-count").getByText("25 tasks match these filters").waitFor();
    await suite.page.getByLabel("Select every task on this page").check();
    await suite.page.getByRole("button", { name: "Select all 25 matching" }).click();
    await suite.page.getByTestId("selected-count").getByText("All 25 matching tasks selected").waitFor();
    await suite.page.getByRole("region", { name: "Selected tasks" }).getByRole("button", { name: "Pause…" }).click();
    const dialog = suite.page.getByRole("dialog", { name: "Pause 25 tasks?" });
    await dialog.getByTestId("confirm-count").getByText("This will pause 25 tasks matching this filter.").waitFor();
    await screenshot(suite.page, "tasks-bulk-all-matching-desktop");
    await dialog.getByRole("button", { name: "Pause 25" }).click();
    await suite.page.getByTestId("bulk-outcome").getByText("25 tasks paused").waitFor();
    const statuses = await Promise.all(many.tasks.map((t) => statusOf(t.id)));
    expect(new Set(statuses)).toEqual(new Set([TaskStatus.PAUSED]));
    // The filtered list (QUEUED) empties without a reload.
    await suite.page.getByText("No tasks match these filters.").waitFor();

    await suite.page.goto(url(`/tasks?status=paused&after=${since.toISOString()}&size=20`));
    await suite.page.getByTestId("result-count").getByText("25 tasks match these filters").waitFor();
    await suite.page.getByLabel("Select every task on this page").check();
    await suite.page.getByRole("button", { name: "Select all 25 matching" }).click();
    await suite.page.getByRole("region", { name: "Selected tasks" }).getByRole("button", { name: "Resume…" }).click();
    await suite.page.getByRole("dialog", { name: "Resume 25 tasks?" }).getByRole("button", { name: "Resume 25" }).click();
    await suite.page.getByTestId("bulk-outcome").getByText("25 tasks resumed").waitFor();
    expect(new Set(await Promise.all(many.tasks.map((t) => statusOf(t.id))))).toEqual(new Set([TaskStatus.QUEUED]));

    // A name search selects as a whole too, by the same prefix as the list (case-sensitive, so
    // "Many-other" is neither listed nor cancelled).
    const other = await createTask(suite.api.client, { name: "Many-other", runAt: later() });
    await suite.page.goto(url("/tasks?name=many-&size=20"));
    await suite.page.getByTestId("result-count").getByText("25 tasks match these filters").waitFor();
    await suite.page.getByLabel("Select every task on this page").check();
    await suite.page.getByRole("button", { name: "Select all 25 matching" }).click();
    await suite.page.getByRole("region", { name: "Selected tasks" }).getByRole("button", { name: "Cancel…" }).click();
    const cancel = suite.page.getByRole("dialog", { name: "Cancel 25 tasks?" });
    await cancel.getByTestId("confirm-count").getByText("This will cancel 25 tasks matching this filter.").waitFor();
    await cancel.getByRole("button", { name: "Cancel 25" }).click();
    await suite.page.getByTestId("bulk-outcome").getByText("25 tasks cancelled").waitFor();
    expect(new Set(await Promise.all(many.tasks.map((t) => statusOf(t.id))))).toEqual(new Set([TaskStatus.CANCELLED]));
    expect(await statusOf(other.id)).toBe(TaskStatus.QUEUED);
  });
});

describe("bulk retry", () => {
  it("retries every FAILED task matching a filter beyond the page, and they run again", async () => {
    const since = new Date(Date.now() - 1_000);
    const failing = await suite.api.client.createTasks({
      tasks: Array.from({ length: 22 }, (_, i) => ({ name: `doomed-${i}`, type: "noop", parameters: { fail: "on purpose" }, maxAttempts: 1 })),
    });
    await Promise.all(failing.tasks.map((t) => until(t.id, TaskStatus.FAILED)));
    await suite.page.goto(url(`/tasks?status=failed&type=noop&after=${since.toISOString()}&size=20`));
    await suite.page.getByTestId("result-count").getByText("22 tasks match these filters").waitFor();
    await suite.page.getByLabel("Select every task on this page").check();
    await suite.page.getByRole("button", { name: "Select all 22 matching" }).click();
    await suite.page.getByRole("region", { name: "Selected tasks" }).getByRole("button", { name: "Retry…" }).click();
    const dialog = suite.page.getByRole("dialog", { name: "Retry 22 tasks?" });
    await dialog.getByRole("button", { name: "Retry 22" }).click();
    await suite.page.getByTestId("bulk-outcome").getByText("22 tasks retried").waitFor();
    // Each ran again (attempt 2, which fails on purpose too) and its history shows the retry.
    await Promise.all(
      failing.tasks.map((t) => waitFor(async () => (await suite.api.client.getTask({ id: t.id })).task?.attempts === 1 && (await suite.api.client.getTaskHistory({ id: t.id })).history.length >= 6, `task ${t.id} to run again`)),
    );
    for (const t of failing.tasks) {
      const { history } = await suite.api.client.getTaskHistory({ id: t.id });
      expect(history.map((h) => TaskStatus[h.status]).slice(0, 6)).toEqual(["QUEUED", "RUNNING", "FAILED", "QUEUED", "RUNNING", "FAILED"]);
    }
  });
});

describe("task detail", () => {
  it("pauses and resumes a waiting task from its page", async () => {
    const task = await createTask(suite.api.client, { name: "hold me", runAt: later() });
    await suite.page.goto(url(`/tasks/${task.id}`));
    await suite.page.getByTestId("task-status").getByText("QUEUED").waitFor();
    await suite.page.getByRole("button", { name: "Pause", exact: true }).click();
    await suite.page.getByTestId("task-status").getByText("PAUSED").waitFor();
    expect(await statusOf(task.id)).toBe(TaskStatus.PAUSED);
    await suite.page.getByRole("button", { name: "Resume", exact: true }).click();
    await suite.page.getByTestId("task-status").getByText("QUEUED").waitFor();
    expect(await statusOf(task.id)).toBe(TaskStatus.QUEUED);
  });
});
