import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Page } from "playwright-core";
import { describe, expect, it, vi } from "vitest";
import { TaskStatus } from "../../src/gen/task/v1/task_pb.js";
import { runCli } from "../helpers/cli.js";
import { createTask } from "../helpers/factory.js";
import { waitFor } from "../helpers/wait.js";
import { screenshot, screenshotPhone, useDashboardSuite } from "./harness.js";

// A browser, a server and workers on two shared cores: allow for a slow machine.
vi.setConfig({ testTimeout: 180_000 });

const suite = useDashboardSuite();

const url = (path: string) => `${suite.api.server.url}${path}`;
const statusOf = async (id: bigint) => (await suite.api.client.getTask({ id })).task!.status;
const until = (id: bigint, status: TaskStatus) => waitFor(async () => (await statusOf(id)) === status, `task ${id} to be ${TaskStatus[status]}`);
/** A shell task that prints "line N" every `everyS` seconds, for a long while. */
const chatty = (name: string, everyS = 0.25) => createTask(suite.api.client, { name, type: "shell", parameters: { command: `for i in $(seq 1 400); do echo "line $i"; sleep ${everyS}; done` } });

/** The number in the last output line shown ("line 17" -> 17), or 0. */
async function lastLineNumber(p: Page): Promise<number> {
  const text = (await p.locator("[data-testid=log-lines] .log-line").last().textContent({ timeout: 1_000 }).catch(() => "")) ?? "";
  return Number(/line (\d+)/.exec(text)?.[1] ?? 0);
}

describe("overview", () => {
  it("shows the counts GetTaskStatusCounts returns, per status and in total", async () => {
    const done = await createTask(suite.api.client, { name: "quick" });
    const failing = await createTask(suite.api.client, { name: "doomed", parameters: { fail: "boom" }, maxAttempts: 1 });
    const later = await createTask(suite.api.client, { name: "later", runAt: timestampFromDate(new Date(Date.now() + 3_600_000)) });
    const cancelled = await createTask(suite.api.client, { name: "unwanted", runAt: timestampFromDate(new Date(Date.now() + 3_600_000)) });
    await suite.api.client.cancelTask({ id: cancelled.id });
    const running = await createTask(suite.api.client, { name: "long sleep", type: "shell", parameters: { command: "sleep 60" } });
    await Promise.all([until(done.id, TaskStatus.SUCCEEDED), until(failing.id, TaskStatus.FAILED), until(running.id, TaskStatus.RUNNING)]);
    expect(await statusOf(later.id)).toBe(TaskStatus.QUEUED);

    await suite.page.goto(url("/"));
    const shown = async (p: Page) => {
      const cards = p.locator("[data-testid=status-counts] [data-status]");
      const values: Record<string, string> = {};
      for (const card of await cards.all()) values[(await card.getAttribute("data-status"))!] = ((await card.textContent()) ?? "").replace(/\D/g, "");
      return values;
    };
    const expected = async () => {
      const res = await suite.api.client.getTaskStatusCounts({});
      return Object.fromEntries([["TOTAL", res.total.toString()], ...res.counts.map((c) => [TaskStatus[c.status], c.count.toString()])]);
    };
    // Equal on screen and in the API (both read until they agree: the page refreshes itself).
    const agreed = await waitFor(async () => {
      const [a, b] = await Promise.all([shown(suite.page), expected()]);
      return JSON.stringify(a) === JSON.stringify(b) ? a : undefined;
    }, "the overview counts to match GetTaskStatusCounts");
    expect(agreed).toMatchObject({ TOTAL: "5", QUEUED: "1", RUNNING: "1", SUCCEEDED: "1", FAILED: "1", CANCELLED: "1", RETRYING: "0" });
    await suite.page.getByRole("heading", { name: "Task types" }).waitFor();
    await suite.page.getByRole("link", { name: "long sleep" }).first().waitFor();
    await screenshot(suite.page, "overview-desktop");
    const ready = (p: Page) => p.getByText("long sleep").first().waitFor();
    await screenshotPhone(suite.browser, url("/"), "overview-phone", ready);
    await screenshotPhone(suite.browser, url("/"), "overview-phone-dark", ready, { colorScheme: "dark" });

    // A card is a link to the tasks in that status.
    await suite.page.locator(".count-card", { hasText: "FAILED" }).click();
    await suite.page.waitForURL(/\/tasks\?status=failed$/);
    await suite.page.locator(`tr[data-task-id="${failing.id}"]`).waitFor();
    await suite.api.client.cancelTask({ id: running.id });
  });
});

describe("tasks table", () => {
  it("shows a task created with the CLI without a reload", async () => {
    await suite.page.goto(url("/tasks"));
    await suite.page.getByTestId("result-count").waitFor();
    // Survives only if the page is never reloaded.
    await suite.page.evaluate(() => ((window as unknown as { marker: string }).marker = "same page"));
    const created = await runCli(["--address", suite.api.server.url, "task", "create", "made by the cli", "--type", "noop", "-p", "sleep_ms=200", "-o", "json"]);
    expect(created.code, created.stderr).toBe(0);
    const id = JSON.parse(created.stdout).task.id as string;
    const row = suite.page.locator(`tr[data-task-id="${id}"]`);
    await row.waitFor();
    await row.getByText("made by the cli").waitFor();
    // And it keeps up with the task's progress.
    await row.getByText("SUCCEEDED").waitFor();
    expect(await suite.page.evaluate(() => (window as unknown as { marker?: string }).marker)).toBe("same page");
    await screenshot(suite.page, "tasks-desktop");
    await screenshotPhone(suite.browser, url("/tasks"), "tasks-phone", (p) => p.locator(`tr[data-task-id="${id}"]`).waitFor());
  });

  it("keeps filters and the id search in the URL, across a reload", async () => {
    const failed = await createTask(suite.api.client, { name: "filter me", parameters: { fail: "nope" }, maxAttempts: 1 });
    const other = await createTask(suite.api.client, { name: "not me" });
    await Promise.all([until(failed.id, TaskStatus.FAILED), until(other.id, TaskStatus.SUCCEEDED)]);
    await suite.page.goto(url("/tasks"));
    await suite.page.locator(`tr[data-task-id="${other.id}"]`).waitFor();

    const statusChip = suite.page.getByRole("group", { name: "Status" }).getByRole("button", { name: "FAILED" });
    await statusChip.click();
    await suite.page.waitForURL((u) => u.search === "?status=failed");
    await suite.page.getByRole("group", { name: "Type" }).getByRole("button", { name: "noop" }).click();
    await suite.page.waitForURL((u) => u.search === "?status=failed&type=noop");
    await suite.page.locator(`tr[data-task-id="${other.id}"]`).waitFor({ state: "detached" });
    await suite.page.locator(`tr[data-task-id="${failed.id}"]`).waitFor();

    await suite.page.reload();
    await suite.page.locator(`tr[data-task-id="${failed.id}"]`).waitFor();
    expect(await statusChip.getAttribute("aria-pressed")).toBe("true");
    expect(await suite.page.getByRole("group", { name: "Type" }).getByRole("button", { name: "noop" }).getAttribute("aria-pressed")).toBe("true");
    const statuses = await suite.page.locator("tr[data-task-id] .status").allTextContents();
    expect(statuses.length).toBeGreaterThan(0);
    expect(new Set(statuses)).toEqual(new Set(["FAILED"]));

    // Search by id: clears nothing else, lands in the URL, finds exactly that task.
    await suite.page.getByRole("button", { name: "Clear filters" }).click();
    await suite.page.waitForURL((u) => u.search === "");
    await suite.page.getByLabel("Task id").fill(`#${other.id}`);
    await suite.page.getByRole("button", { name: "Search" }).click();
    await suite.page.waitForURL((u) => u.search === `?id=${other.id}`);
    // The previous rows stay (dimmed) until the search answers: wait for the answer.
    await suite.page.locator("table.task-table:not([aria-busy=true])").waitFor();
    await waitFor(async () => (await suite.page.locator("tr[data-task-id]").count()) === 1, "only the searched task");
    await suite.page.locator(`tr[data-task-id="${other.id}"]`).waitFor();
    // Anything but ids searches names by prefix.
    await suite.page.getByLabel("Task id").fill("filter m");
    await suite.page.getByRole("button", { name: "Search" }).click();
    await suite.page.waitForURL((u) => u.search === "?name=filter+m");
    await suite.page.locator("table.task-table:not([aria-busy=true])").waitFor();
    await suite.page.locator(`tr[data-task-id="${failed.id}"]`).waitFor();
    await waitFor(async () => (await suite.page.locator("tr[data-task-id]").count()) === 1, "only the task named filter me");
    await suite.page.goBack();
    await suite.page.goBack();
    await suite.page.waitForURL((u) => u.search === "");
  });

  it("pages with page tokens: Older and Newer keep their place while tasks arrive", async () => {
    const batch = await suite.api.client.createTasks({ tasks: Array.from({ length: 25 }, (_, i) => ({ name: `paged ${i + 1}`, type: "noop", runAt: timestampFromDate(new Date(Date.now() + 3_600_000)) })) });
    const newestFirst = batch.tasks.map((t) => t.id.toString()).reverse();
    await suite.page.goto(url("/tasks?status=queued&size=20"));
    await suite.page.locator(`tr[data-task-id="${newestFirst[0]}"]`).waitFor();
    await suite.page.getByRole("button", { name: "Older" }).click();
    await suite.page.waitForURL(/cursor=/);
    await suite.page.locator(`tr[data-task-id="${newestFirst[20]}"]`).waitFor();
    const olderPage = await suite.page.locator("tr[data-task-id]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-task-id")));
    // A new task does not shift the older page.
    await createTask(suite.api.client, { name: "newcomer", runAt: timestampFromDate(new Date(Date.now() + 3_600_000)) });
    await suite.page.waitForTimeout(2_500);
    expect(await suite.page.locator("tr[data-task-id]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-task-id")))).toEqual(olderPage);
    await suite.page.getByRole("button", { name: "Newer" }).click();
    await suite.page.getByText("newcomer").waitFor();
  });
});

describe("keyboard", () => {
  it("reaches filters, rows and pages without a mouse", async () => {
    const task = await createTask(suite.api.client, { name: "keyboard target" });
    await until(task.id, TaskStatus.SUCCEEDED);
    await suite.page.goto(url("/tasks"));
    await suite.page.locator(`tr[data-task-id="${task.id}"]`).waitFor();
    // The first Tab lands on the skip link, which moves focus to the content.
    await suite.page.keyboard.press("Tab");
    expect(await suite.page.evaluate(() => document.activeElement?.textContent)).toBe("Skip to content");
    // Tab through to the SUCCEEDED chip and press it with the space bar.
    for (let i = 0; i < 40; i++) {
      await suite.page.keyboard.press("Tab");
      if ((await suite.page.evaluate(() => document.activeElement?.textContent)) === "SUCCEEDED") break;
    }
    await suite.page.keyboard.press("Space");
    await suite.page.waitForURL((u) => u.search === "?status=succeeded");
    // On to the task's link, and Enter opens it.
    // Past the search, the time inputs (a stop per date part) and the row's checkbox.
    for (let i = 0; i < 100; i++) {
      await suite.page.keyboard.press("Tab");
      if ((await suite.page.evaluate(() => document.activeElement?.getAttribute("href"))) === `/tasks/${task.id}`) break;
    }
    await suite.page.keyboard.press("Enter");
    await suite.page.waitForURL(url(`/tasks/${task.id}`));
    await suite.page.getByRole("heading", { name: /keyboard target/ }).waitFor();
  });
});

describe("create task", () => {
  it("shows the server's field errors next to the fields, then creates the task", async () => {
    // Chromium logs each refused request (HTTP 400) as a console error; only these are expected.
    const refused = /status of 400 \(Bad Request\) \(http:\/\/[^)]+\/task\.v1\.TaskService\/CreateTask\)/;
    suite.w.allow(refused);
    await suite.page.goto(url("/tasks/new?type=send_email"));
    await suite.page.getByLabel("to (required)").fill("not-an-email");
    await suite.page.getByRole("button", { name: "Create task" }).click();
    // The server checks the request's own fields first, then the parameters.
    await suite.page.locator('[data-field-error="name"]', { hasText: "is required" }).waitFor();
    expect(await suite.page.getByLabel("Name (required)").getAttribute("aria-invalid")).toBe("true");
    await suite.page.getByTestId("form-problems").getByText("1 problem").waitFor();

    await suite.page.getByLabel("Name (required)").fill("welcome mail");
    await suite.page.getByRole("button", { name: "Create task" }).click();
    await suite.page.locator('[data-field-error="to"]').waitFor();
    await suite.page.locator('[data-field-error="subject"]', { hasText: "is required" }).waitFor();
    await suite.page.locator('[data-field-error="body"]', { hasText: "is required" }).waitFor();
    expect(await suite.page.locator('[data-field-error="name"]').count()).toBe(0);
    await screenshot(suite.page, "create-errors-desktop");
    await screenshotPhone(suite.browser, url("/tasks/new?type=send_email"), "create-errors-phone", async (p) => {
      await p.getByLabel("Name (required)").fill("welcome mail");
      await p.getByLabel("to (required)").fill("not-an-email");
      await p.getByRole("button", { name: "Create task" }).click();
      await p.locator('[data-field-error="subject"]').waitFor();
    }, { allow: refused });

    // Inputs the page can check itself never reach the server.
    await suite.page.getByText("Scheduling and retries").click();
    await suite.page.getByLabel("Max attempts").fill("three");
    await suite.page.getByRole("button", { name: "Create task" }).click();
    await suite.page.locator('[data-field-error="max_attempts"]', { hasText: "whole number" }).waitFor();
    await suite.page.getByLabel("Max attempts").fill("");

    // A valid task: created, and the page moves to it.
    await suite.page.getByLabel("Type").selectOption("noop");
    await suite.page.getByLabel("Name (required)").fill("made in the browser");
    await suite.page.getByLabel("sleep_ms").fill("10");
    await suite.page.getByRole("button", { name: "Create task" }).click();
    await suite.page.waitForURL(/\/tasks\/\d+$/);
    const id = BigInt(new URL(suite.page.url()).pathname.split("/").pop()!);
    const task = (await suite.api.client.getTask({ id })).task!;
    expect(task).toMatchObject({ name: "made in the browser", type: "noop" });
    expect(task.parameters).toMatchObject({ sleep_ms: 10 });
    await suite.page.getByTestId("task-status").getByText("SUCCEEDED").waitFor();
  });
});

describe("task detail", () => {
  it("follows the output live, cancels a running shell task, retries and clones it", async () => {
    const task = await chatty("chatty shell");
    await suite.page.goto(url(`/tasks/${task.id}`));
    await suite.page.getByTestId("task-status").getByText("RUNNING").waitFor();
    await suite.page.locator("[data-testid=log-lines] .log-line", { hasText: /^line 2$/m }).waitFor();
    const seen = await lastLineNumber(suite.page);
    // New lines arrive on the open page.
    await waitFor(async () => (await lastLineNumber(suite.page)) >= seen + 3, "new output lines on the page");
    await suite.page.getByRole("heading", { name: "History" }).waitFor();
    await screenshot(suite.page, "task-detail-desktop");
    await screenshotPhone(suite.browser, url(`/tasks/${task.id}`), "task-detail-phone", (p) => p.locator("[data-testid=log-lines] .log-line").first().waitFor());
    await screenshotPhone(suite.browser, url(`/tasks/${task.id}`), "task-detail-phone-dark", (p) => p.locator("[data-testid=log-lines] .log-line").first().waitFor(), { colorScheme: "dark" });

    // Download gives the whole log so far, every line in order, from the server's plain-text endpoint.
    const [download, request] = await Promise.all([
      suite.page.waitForEvent("download"),
      suite.page.waitForRequest((r) => new URL(r.url()).pathname === `/tasks/${task.id}/logs`),
      suite.page.getByRole("button", { name: "Download" }).click(),
    ]);
    expect(request.method()).toBe("GET");
    expect(download.suggestedFilename()).toBe(`task-${task.id}.log`);
    const text = await download.createReadStream().then(async (s) => {
      let out = "";
      for await (const chunk of s) out += chunk;
      return out;
    });
    const lines = text.trimEnd().split("\n");
    expect(lines.length).toBeGreaterThanOrEqual(seen);
    expect(lines.slice(0, 3)).toEqual(["line 1", "line 2", "line 3"]);

    // Jump to a line range: exactly those lines, numbered.
    await suite.page.getByLabel("From line", { exact: true }).fill("2");
    await suite.page.getByLabel("To line", { exact: true }).fill("4");
    await suite.page.getByRole("button", { name: "Go", exact: true }).click();
    const range = suite.page.getByTestId("log-range");
    await range.locator(".log-line").first().waitFor();
    expect(await range.locator(".log-line").evaluateAll((els) => els.map((e) => [e.getAttribute("data-seq"), e.textContent]))).toEqual([
      ["2", "2 line 2\n"],
      ["3", "3 line 3\n"],
      ["4", "4 line 4\n"],
    ]);

    // The confirmation starts on the safe choice, and Escape backs out of it.
    await suite.page.getByRole("button", { name: "Cancel", exact: true }).click();
    expect(await suite.page.evaluate(() => document.activeElement?.textContent)).toBe("Keep it");
    await suite.page.keyboard.press("Escape");
    await suite.page.getByRole("button", { name: "Yes, cancel it" }).waitFor({ state: "detached" });
    expect(await statusOf(task.id)).toBe(TaskStatus.RUNNING);
    await suite.page.getByRole("button", { name: "Cancel", exact: true }).click();
    await suite.page.getByRole("button", { name: "Yes, cancel it" }).click();
    await suite.page.getByTestId("task-status").getByText("CANCELLED").waitFor();
    expect(await statusOf(task.id)).toBe(TaskStatus.CANCELLED);
    await suite.page.locator(".timeline .status", { hasText: "CANCELLED" }).waitFor();
    await suite.page.getByRole("button", { name: "Cancel", exact: true }).waitFor({ state: "detached" });

    // Retry puts it back to work, and the page follows the new attempt.
    await suite.page.getByRole("button", { name: "Retry" }).click();
    await suite.page.getByTestId("task-status").getByText("RUNNING").waitFor();
    await suite.api.client.cancelTask({ id: task.id });
    await suite.page.getByTestId("task-status").getByText("CANCELLED").waitFor();

    // Clone opens the form with the task's type and parameters.
    await suite.page.getByRole("link", { name: "Clone" }).click();
    await suite.page.waitForURL(new RegExp(`/tasks/new\\?clone=${task.id}$`));
    expect(await suite.page.getByLabel("command (required)").inputValue()).toContain('echo "line $i"');
    expect(await suite.page.getByLabel("Name (required)").inputValue()).toBe("chatty shell (copy)");
  });

  it("says so when the task does not exist", async () => {
    // The stream's NotFound arrives inside a 200 response (Connect streams end with their error), so
    // nothing is logged.
    await suite.page.goto(url("/tasks/987654321"));
    await suite.page.getByRole("heading", { name: "Task #987654321 not found" }).waitFor();
    await suite.page.goto(url("/tasks/abc"));
    await suite.page.getByRole("heading", { name: "Not a task id" }).waitFor();
  });
});
