import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Browser, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { TaskStatus } from "../../src/gen/task/v1/task_pb.js";
import type { Workers } from "../../src/queue/runner.js";
import { startTestApi, type TestApi } from "../helpers/api.js";
import { runCli } from "../helpers/cli.js";
import { createTask } from "../helpers/factory.js";
import { waitFor } from "../helpers/wait.js";
import { startTestWorkers } from "../helpers/workers.js";
import { expectNoConsoleErrors, launchBrowser, openPage, screenshot, screenshotPhone, type WatchedPage } from "./harness.js";

// A browser, a server and workers on two shared cores: allow for a slow machine.
vi.setConfig({ testTimeout: 180_000 });

let api: TestApi;
let workers: Workers;
let browser: Browser;
let w: WatchedPage;
let page: Page;

beforeAll(async () => {
  [api, browser] = await Promise.all([startTestApi(), launchBrowser()]);
  workers = await startTestWorkers(api.database);
});
afterAll(async () => {
  await browser?.close();
  await workers?.stop();
  await api?.close();
});
beforeEach(async () => {
  w = await openPage(browser);
  page = w.page;
});
afterEach(async () => {
  expectNoConsoleErrors(w);
  await w.close();
});

const url = (path: string) => `${api.server.url}${path}`;
const statusOf = async (id: bigint) => (await api.client.getTask({ id })).task!.status;
const until = (id: bigint, status: TaskStatus) => waitFor(async () => (await statusOf(id)) === status, `task ${id} to be ${TaskStatus[status]}`);
/** A shell task that prints "line N" every `everyS` seconds, for a long while. */
const chatty = (name: string, everyS = 0.25) => createTask(api.client, { name, type: "shell", parameters: { command: `for i in $(seq 1 400); do echo "line $i"; sleep ${everyS}; done` } });

/** The number in the last output line shown ("line 17" -> 17), or 0. */
async function lastLineNumber(p: Page): Promise<number> {
  const text = (await p.locator("[data-testid=log-lines] .log-line").last().textContent({ timeout: 1_000 }).catch(() => "")) ?? "";
  return Number(/line (\d+)/.exec(text)?.[1] ?? 0);
}

describe("overview", () => {
  it("shows the counts GetTaskStatusCounts returns, per status and in total", async () => {
    const done = await createTask(api.client, { name: "quick" });
    const failing = await createTask(api.client, { name: "doomed", parameters: { fail: "boom" }, maxAttempts: 1 });
    const later = await createTask(api.client, { name: "later", runAt: timestampFromDate(new Date(Date.now() + 3_600_000)) });
    const cancelled = await createTask(api.client, { name: "unwanted", runAt: timestampFromDate(new Date(Date.now() + 3_600_000)) });
    await api.client.cancelTask({ id: cancelled.id });
    const running = await createTask(api.client, { name: "long sleep", type: "shell", parameters: { command: "sleep 60" } });
    await Promise.all([until(done.id, TaskStatus.SUCCEEDED), until(failing.id, TaskStatus.FAILED), until(running.id, TaskStatus.RUNNING)]);
    expect(await statusOf(later.id)).toBe(TaskStatus.QUEUED);

    await page.goto(url("/"));
    const shown = async (p: Page) => {
      const cards = p.locator("[data-testid=status-counts] [data-status]");
      const values: Record<string, string> = {};
      for (const card of await cards.all()) values[(await card.getAttribute("data-status"))!] = ((await card.textContent()) ?? "").replace(/\D/g, "");
      return values;
    };
    const expected = async () => {
      const res = await api.client.getTaskStatusCounts({});
      return Object.fromEntries([["TOTAL", res.total.toString()], ...res.counts.map((c) => [TaskStatus[c.status], c.count.toString()])]);
    };
    // Equal on screen and in the API (both read until they agree: the page refreshes itself).
    const agreed = await waitFor(async () => {
      const [a, b] = await Promise.all([shown(page), expected()]);
      return JSON.stringify(a) === JSON.stringify(b) ? a : undefined;
    }, "the overview counts to match GetTaskStatusCounts");
    expect(agreed).toMatchObject({ TOTAL: "5", QUEUED: "1", RUNNING: "1", SUCCEEDED: "1", FAILED: "1", CANCELLED: "1", RETRYING: "0" });
    await page.getByRole("heading", { name: "Task types" }).waitFor();
    await page.getByRole("link", { name: "long sleep" }).first().waitFor();
    await screenshot(page, "overview-desktop");
    const ready = (p: Page) => p.getByText("long sleep").first().waitFor();
    await screenshotPhone(browser, url("/"), "overview-phone", ready);
    await screenshotPhone(browser, url("/"), "overview-phone-dark", ready, { colorScheme: "dark" });

    // A card is a link to the tasks in that status.
    await page.locator(".count-card", { hasText: "FAILED" }).click();
    await page.waitForURL(/\/tasks\?status=failed$/);
    await page.locator(`tr[data-task-id="${failing.id}"]`).waitFor();
    await api.client.cancelTask({ id: running.id });
  });
});

describe("tasks table", () => {
  it("shows a task created with the CLI without a reload", async () => {
    await page.goto(url("/tasks"));
    await page.getByTestId("result-count").waitFor();
    // Survives only if the page is never reloaded.
    await page.evaluate(() => ((window as unknown as { marker: string }).marker = "same page"));
    const created = await runCli(["--address", api.server.url, "task", "create", "made by the cli", "--type", "noop", "-p", "sleep_ms=200", "-o", "json"]);
    expect(created.code, created.stderr).toBe(0);
    const id = JSON.parse(created.stdout).task.id as string;
    const row = page.locator(`tr[data-task-id="${id}"]`);
    await row.waitFor();
    await row.getByText("made by the cli").waitFor();
    // And it keeps up with the task's progress.
    await row.getByText("SUCCEEDED").waitFor();
    expect(await page.evaluate(() => (window as unknown as { marker?: string }).marker)).toBe("same page");
    await screenshot(page, "tasks-desktop");
    await screenshotPhone(browser, url("/tasks"), "tasks-phone", (p) => p.locator(`tr[data-task-id="${id}"]`).waitFor());
  });

  it("keeps filters and the id search in the URL, across a reload", async () => {
    const failed = await createTask(api.client, { name: "filter me", parameters: { fail: "nope" }, maxAttempts: 1 });
    const other = await createTask(api.client, { name: "not me" });
    await Promise.all([until(failed.id, TaskStatus.FAILED), until(other.id, TaskStatus.SUCCEEDED)]);
    await page.goto(url("/tasks"));
    await page.locator(`tr[data-task-id="${other.id}"]`).waitFor();

    const statusChip = page.getByRole("group", { name: "Status" }).getByRole("button", { name: "FAILED" });
    await statusChip.click();
    await page.waitForURL((u) => u.search === "?status=failed");
    await page.getByRole("group", { name: "Type" }).getByRole("button", { name: "noop" }).click();
    await page.waitForURL((u) => u.search === "?status=failed&type=noop");
    await page.locator(`tr[data-task-id="${other.id}"]`).waitFor({ state: "detached" });
    await page.locator(`tr[data-task-id="${failed.id}"]`).waitFor();

    await page.reload();
    await page.locator(`tr[data-task-id="${failed.id}"]`).waitFor();
    expect(await statusChip.getAttribute("aria-pressed")).toBe("true");
    expect(await page.getByRole("group", { name: "Type" }).getByRole("button", { name: "noop" }).getAttribute("aria-pressed")).toBe("true");
    const statuses = await page.locator("tr[data-task-id] .status").allTextContents();
    expect(statuses.length).toBeGreaterThan(0);
    expect(new Set(statuses)).toEqual(new Set(["FAILED"]));

    // Search by id: clears nothing else, lands in the URL, finds exactly that task.
    await page.getByRole("button", { name: "Clear filters" }).click();
    await page.waitForURL((u) => u.search === "");
    await page.getByLabel("Task id").fill(`#${other.id}`);
    await page.getByRole("button", { name: "Search" }).click();
    await page.waitForURL((u) => u.search === `?id=${other.id}`);
    // The previous rows stay (dimmed) until the search answers: wait for the answer.
    await page.locator("table.task-table:not([aria-busy=true])").waitFor();
    await waitFor(async () => (await page.locator("tr[data-task-id]").count()) === 1, "only the searched task");
    await page.locator(`tr[data-task-id="${other.id}"]`).waitFor();
    await page.getByLabel("Task id").fill("twelve");
    await page.getByRole("button", { name: "Search" }).click();
    await page.getByText("Enter task ids").waitFor();
    await page.goBack();
    await page.waitForURL((u) => u.search === "");
  });

  it("pages with page tokens: Older and Newer keep their place while tasks arrive", async () => {
    const batch = await api.client.createTasks({ tasks: Array.from({ length: 25 }, (_, i) => ({ name: `paged ${i + 1}`, type: "noop", runAt: timestampFromDate(new Date(Date.now() + 3_600_000)) })) });
    const newestFirst = batch.tasks.map((t) => t.id.toString()).reverse();
    await page.goto(url("/tasks?status=queued&size=20"));
    await page.locator(`tr[data-task-id="${newestFirst[0]}"]`).waitFor();
    await page.getByRole("button", { name: "Older" }).click();
    await page.waitForURL(/cursor=/);
    await page.locator(`tr[data-task-id="${newestFirst[20]}"]`).waitFor();
    const olderPage = await page.locator("tr[data-task-id]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-task-id")));
    // A new task does not shift the older page.
    await createTask(api.client, { name: "newcomer", runAt: timestampFromDate(new Date(Date.now() + 3_600_000)) });
    await page.waitForTimeout(2_500);
    expect(await page.locator("tr[data-task-id]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-task-id")))).toEqual(olderPage);
    await page.getByRole("button", { name: "Newer" }).click();
    await page.getByText("newcomer").waitFor();
  });
});

describe("keyboard", () => {
  it("reaches filters, rows and pages without a mouse", async () => {
    const task = await createTask(api.client, { name: "keyboard target" });
    await until(task.id, TaskStatus.SUCCEEDED);
    await page.goto(url("/tasks"));
    await page.locator(`tr[data-task-id="${task.id}"]`).waitFor();
    // The first Tab lands on the skip link, which moves focus to the content.
    await page.keyboard.press("Tab");
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe("Skip to content");
    // Tab through to the SUCCEEDED chip and press it with the space bar.
    for (let i = 0; i < 40; i++) {
      await page.keyboard.press("Tab");
      if ((await page.evaluate(() => document.activeElement?.textContent)) === "SUCCEEDED") break;
    }
    await page.keyboard.press("Space");
    await page.waitForURL((u) => u.search === "?status=succeeded");
    // On to the task's link, and Enter opens it.
    for (let i = 0; i < 40; i++) {
      await page.keyboard.press("Tab");
      if ((await page.evaluate(() => document.activeElement?.getAttribute("href"))) === `/tasks/${task.id}`) break;
    }
    await page.keyboard.press("Enter");
    await page.waitForURL(url(`/tasks/${task.id}`));
    await page.getByRole("heading", { name: /keyboard target/ }).waitFor();
  });
});

describe("create task", () => {
  it("shows the server's field errors next to the fields, then creates the task", async () => {
    // Chromium logs each refused request (HTTP 400) as a console error; only these are expected.
    const refused = /status of 400 \(Bad Request\) \(http:\/\/[^)]+\/task\.v1\.TaskService\/CreateTask\)/;
    w.allow(refused);
    await page.goto(url("/tasks/new?type=send_email"));
    await page.getByLabel("to (required)").fill("not-an-email");
    await page.getByRole("button", { name: "Create task" }).click();
    // The server checks the request's own fields first, then the parameters.
    await page.locator('[data-field-error="name"]', { hasText: "is required" }).waitFor();
    expect(await page.getByLabel("Name (required)").getAttribute("aria-invalid")).toBe("true");
    await page.getByTestId("form-problems").getByText("1 problem").waitFor();

    await page.getByLabel("Name (required)").fill("welcome mail");
    await page.getByRole("button", { name: "Create task" }).click();
    await page.locator('[data-field-error="to"]').waitFor();
    await page.locator('[data-field-error="subject"]', { hasText: "is required" }).waitFor();
    await page.locator('[data-field-error="body"]', { hasText: "is required" }).waitFor();
    expect(await page.locator('[data-field-error="name"]').count()).toBe(0);
    await screenshot(page, "create-errors-desktop");
    await screenshotPhone(browser, url("/tasks/new?type=send_email"), "create-errors-phone", async (p) => {
      await p.getByLabel("Name (required)").fill("welcome mail");
      await p.getByLabel("to (required)").fill("not-an-email");
      await p.getByRole("button", { name: "Create task" }).click();
      await p.locator('[data-field-error="subject"]').waitFor();
    }, { allow: refused });

    // Inputs the page can check itself never reach the server.
    await page.getByText("Scheduling and retries").click();
    await page.getByLabel("Max attempts").fill("three");
    await page.getByRole("button", { name: "Create task" }).click();
    await page.locator('[data-field-error="max_attempts"]', { hasText: "whole number" }).waitFor();
    await page.getByLabel("Max attempts").fill("");

    // A valid task: created, and the page moves to it.
    await page.getByLabel("Type").selectOption("noop");
    await page.getByLabel("Name (required)").fill("made in the browser");
    await page.getByLabel("sleep_ms").fill("10");
    await page.getByRole("button", { name: "Create task" }).click();
    await page.waitForURL(/\/tasks\/\d+$/);
    const id = BigInt(new URL(page.url()).pathname.split("/").pop()!);
    const task = (await api.client.getTask({ id })).task!;
    expect(task).toMatchObject({ name: "made in the browser", type: "noop" });
    expect(task.parameters).toMatchObject({ sleep_ms: 10 });
    await page.getByTestId("task-status").getByText("SUCCEEDED").waitFor();
  });
});

describe("task detail", () => {
  it("follows the output live, cancels a running shell task, retries and clones it", async () => {
    const task = await chatty("chatty shell");
    await page.goto(url(`/tasks/${task.id}`));
    await page.getByTestId("task-status").getByText("RUNNING").waitFor();
    await page.locator("[data-testid=log-lines] .log-line", { hasText: /^line 2$/m }).waitFor();
    const seen = await lastLineNumber(page);
    // New lines arrive on the open page.
    await waitFor(async () => (await lastLineNumber(page)) >= seen + 3, "new output lines on the page");
    await page.getByRole("heading", { name: "History" }).waitFor();
    await screenshot(page, "task-detail-desktop");
    await screenshotPhone(browser, url(`/tasks/${task.id}`), "task-detail-phone", (p) => p.locator("[data-testid=log-lines] .log-line").first().waitFor());
    await screenshotPhone(browser, url(`/tasks/${task.id}`), "task-detail-phone-dark", (p) => p.locator("[data-testid=log-lines] .log-line").first().waitFor(), { colorScheme: "dark" });

    // Download gives the whole log so far, every line in order, from the server's plain-text endpoint.
    const [download, request] = await Promise.all([
      page.waitForEvent("download"),
      page.waitForRequest((r) => new URL(r.url()).pathname === `/tasks/${task.id}/logs`),
      page.getByRole("button", { name: "Download" }).click(),
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
    await page.getByLabel("From line", { exact: true }).fill("2");
    await page.getByLabel("To line", { exact: true }).fill("4");
    await page.getByRole("button", { name: "Go", exact: true }).click();
    const range = page.getByTestId("log-range");
    await range.locator(".log-line").first().waitFor();
    expect(await range.locator(".log-line").evaluateAll((els) => els.map((e) => [e.getAttribute("data-seq"), e.textContent]))).toEqual([
      ["2", "2 line 2\n"],
      ["3", "3 line 3\n"],
      ["4", "4 line 4\n"],
    ]);

    // The confirmation starts on the safe choice, and Escape backs out of it.
    await page.getByRole("button", { name: "Cancel", exact: true }).click();
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe("Keep it");
    await page.keyboard.press("Escape");
    await page.getByRole("button", { name: "Yes, cancel it" }).waitFor({ state: "detached" });
    expect(await statusOf(task.id)).toBe(TaskStatus.RUNNING);
    await page.getByRole("button", { name: "Cancel", exact: true }).click();
    await page.getByRole("button", { name: "Yes, cancel it" }).click();
    await page.getByTestId("task-status").getByText("CANCELLED").waitFor();
    expect(await statusOf(task.id)).toBe(TaskStatus.CANCELLED);
    await page.locator(".timeline .status", { hasText: "CANCELLED" }).waitFor();
    await page.getByRole("button", { name: "Cancel", exact: true }).waitFor({ state: "detached" });

    // Retry puts it back to work, and the page follows the new attempt.
    await page.getByRole("button", { name: "Retry" }).click();
    await page.getByTestId("task-status").getByText("RUNNING").waitFor();
    await api.client.cancelTask({ id: task.id });
    await page.getByTestId("task-status").getByText("CANCELLED").waitFor();

    // Clone opens the form with the task's type and parameters.
    await page.getByRole("link", { name: "Clone" }).click();
    await page.waitForURL(new RegExp(`/tasks/new\\?clone=${task.id}$`));
    expect(await page.getByLabel("command (required)").inputValue()).toContain('echo "line $i"');
    expect(await page.getByLabel("Name (required)").inputValue()).toBe("chatty shell (copy)");
  });

  it("says so when the task does not exist", async () => {
    // The stream's NotFound arrives inside a 200 response (Connect streams end with their error), so
    // nothing is logged.
    await page.goto(url("/tasks/987654321"));
    await page.getByRole("heading", { name: "Task #987654321 not found" }).waitFor();
    await page.goto(url("/tasks/abc"));
    await page.getByRole("heading", { name: "Not a task id" }).waitFor();
  });
});
