import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Locator } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { TaskStatus } from "../../src/gen/task/v1/task_pb.js";
import { bearerToken } from "../../src/sdk/client.js";
import { waitFor } from "../helpers/wait.js";
import { expectNoConsoleErrors, openPage, screenshot, screenshotPhone, signIn, useDashboardSuite } from "./harness.js";

// Files in and out of a task (issue 29) through the dashboard in a real Chromium: the create form
// uploads a file picked from disk (POST /uploads, then CreateTask names it), and the task's page lists
// the input and the output with their sizes and saves the output through the Download button. With
// API tokens on, as a deployment runs: both transfers are plain fetches that must carry the token.

// A browser, a server and workers on two shared cores: allow for a slow machine.
vi.setConfig({ testTimeout: 180_000 });

const ADMIN = "files-admin-token";
const READER = "files-reader-token";
// Shell needs the admin role (TASK_SHELL_ROLE's default); the test helpers' workers run shell tasks.
const suite = useDashboardSuite({ api: { config: { apiTokens: [`ci:admin:${ADMIN}`, `viewer:reader:${READER}`] }, interceptors: [bearerToken(ADMIN)] } });
/**
 * Chromium logs each call the token prompt's page makes before signing in (HTTP 401) as a console
 * error. Only RPCs: a refused upload or download (/uploads, /tasks/{id}/artifacts/...) stays an error.
 */
const BEFORE_SIGN_IN = /status of 401 \(Unauthorized\) \(http:\/\/[^/]+\/task\.v1\.\w+\/\w+\)$/;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "dashboard-files-"));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** About `bytes` bytes of id,name,amount rows, in lower case so that upper-casing changes them. */
function csv(bytes: number): Buffer {
  const rows: string[] = ["id,name,amount\n"];
  let size = rows[0]!.length;
  for (let i = 1; size < bytes; i++) {
    const row = `${i},name ${i.toString(36)},${(i * 37) % 1000}.${i % 100}\n`;
    rows.push(row);
    size += row.length;
  }
  return Buffer.from(rows.join(""), "ascii");
}

/** What TaskFiles shows for a size in KiB (its formatBytes): one decimal. */
const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;

describe("files in the dashboard", () => {
  it("creates a shell task with an input file from the form, lists its files and downloads the output", async () => {
    const { page } = suite;
    const input = csv(300_000);
    const expected = Buffer.from(input.toString("ascii").toUpperCase(), "ascii");
    const local = path.join(dir, "rows 2026.csv");
    await writeFile(local, input);

    suite.w.allow(BEFORE_SIGN_IN);
    await signIn(page, suite.api.server.url, ADMIN, "ci · admin");
    await page.goto(`${suite.api.server.url}/tasks/new?type=shell`);
    await page.getByLabel("Name (required)").fill("upper-case a csv");
    await page.getByLabel("command (required)").fill('tr a-z A-Z < "$TASK_INPUT_DIR/data" > "$TASK_OUTPUT_DIR/upper.csv"');
    const files = page.locator("fieldset.input-files");
    await files.getByRole("button", { name: "Add a file" }).click();
    await files.getByLabel("File", { exact: true }).setInputFiles(local);
    // The name defaults to the picked file's, made safe for the task's directory.
    expect(await files.getByLabel("Name", { exact: true }).inputValue()).toBe("rows_2026.csv");
    await files.getByLabel("Name", { exact: true }).fill("data");
    await screenshot(page, "files-create");
    await page.getByRole("button", { name: "Create task" }).click();

    await page.waitForURL(/\/tasks\/\d+$/);
    const id = BigInt(/\/tasks\/(\d+)$/.exec(page.url())![1]!);
    const ended = await waitFor(async () => {
      const task = (await suite.api.client.getTask({ id })).task!;
      return [TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED].includes(task.status) && task;
    }, "the task to end");
    expect(TaskStatus[ended.status], ended.lastError).toBe("SUCCEEDED");
    expect(ended.type).toBe("shell");

    // The page refetches its files when the status changes: the output appears without a reload.
    const table = page.getByTestId("task-files");
    const row = (name: string) => table.locator("tbody tr", { has: page.locator("code", { hasText: new RegExp(`^${name.replace(".", "\\.")}$`) }) });
    await row("upper.csv").waitFor();
    const cells = async (name: string) => (await row(name).locator("td").allTextContents()).map((t) => t.trim());
    expect(await table.locator("tbody tr").count()).toBe(2);
    expect(await cells("data")).toEqual(["input", "—", "data", kib(input.length), ""]);
    expect(await cells("upper.csv")).toEqual(["output", "1", "upper.csv", kib(expected.length), "Download"]);
    expect(await row("data").locator("td").nth(3).getAttribute("title")).toBe(`${input.length} bytes`);
    // Inputs are the caller's own: only outputs have a download.
    expect(await row("data").getByRole("button").count()).toBe(0);
    await screenshot(page, "files-detail");

    const [download] = await Promise.all([page.waitForEvent("download"), row("upper.csv").getByRole("button", { name: "Download upper.csv" }).click()]);
    expect(download.suggestedFilename()).toBe("upper.csv");
    const saved = path.join(dir, "downloaded.csv");
    await download.saveAs(saved);
    const got = await readFile(saved);
    expect(got.length).toBe(expected.length);
    expect(got.equals(expected)).toBe(true);
    // The button comes back once the save is done, and no error was shown.
    await row("upper.csv").getByRole("button", { name: "Download upper.csv" }).and(page.locator(":enabled")).waitFor();
    expect(await page.getByRole("alert").count()).toBe(0);

    // A reader may download too (GET /tasks/{id}/artifacts/... needs role reader).
    const reader = await openPage(suite.browser);
    reader.allow(BEFORE_SIGN_IN);
    try {
      await signIn(reader.page, suite.api.server.url, READER, "viewer · reader");
      await reader.page.goto(`${suite.api.server.url}/tasks/${id}`);
      const button = reader.page.getByTestId("task-files").getByRole("button", { name: "Download upper.csv" });
      const [again] = await Promise.all([reader.page.waitForEvent("download"), button.click()]);
      const savedAgain = path.join(dir, "reader.csv");
      await again.saveAs(savedAgain);
      expect((await readFile(savedAgain)).equals(expected)).toBe(true);
      expectNoConsoleErrors(reader);
    } finally {
      await reader.close();
    }
  });

  it("fits the file inputs and the files table on a phone", async () => {
    const { page } = suite;
    const local = path.join(dir, "small.csv");
    await writeFile(local, csv(2_000));
    suite.w.allow(BEFORE_SIGN_IN);
    await signIn(page, suite.api.server.url, ADMIN, "ci · admin");
    await page.goto(`${suite.api.server.url}/tasks/new?type=shell`);
    await page.getByLabel("Name (required)").fill("copy a csv");
    await page.getByLabel("command (required)").fill('cp "$TASK_INPUT_DIR/data" "$TASK_OUTPUT_DIR/copy-of-the-data-with-a-long-name.csv"');
    await page.getByRole("button", { name: "Add a file" }).click();
    await page.getByLabel("File", { exact: true }).setInputFiles(local);
    await page.getByLabel("Name", { exact: true }).fill("data");
    await page.getByRole("button", { name: "Create task" }).click();
    await page.waitForURL(/\/tasks\/\d+$/);
    const url = page.url();
    await page.getByTestId("task-files").getByRole("button", { name: /^Download / }).waitFor();

    /** How far an element sticks out past the right edge of the viewport (≤ 0 when it fits). */
    const overhang = (l: Locator) => l.evaluate((e) => e.getBoundingClientRect().right - document.documentElement.clientWidth);
    // Each view gets a phone page of its own, which signs in first.
    await screenshotPhone(suite.browser, `${suite.api.server.url}/`, "files-create-phone", async (p) => {
      await signIn(p, suite.api.server.url, ADMIN, "ci · admin");
      await p.goto(`${suite.api.server.url}/tasks/new?type=shell`);
      await p.getByRole("button", { name: "Add a file" }).click();
      await p.getByLabel("File", { exact: true }).setInputFiles(local);
      expect(await overhang(p.locator(".file-row"))).toBeLessThanOrEqual(0);
    }, { allow: BEFORE_SIGN_IN });
    await screenshotPhone(suite.browser, `${suite.api.server.url}/`, "files-detail-phone", async (p) => {
      await signIn(p, suite.api.server.url, ADMIN, "ci · admin");
      await p.goto(url);
      const download = p.getByTestId("task-files").getByRole("button", { name: /^Download / });
      await download.waitFor();
      // The table became cards: the download button is on screen, not past a sideways scroll.
      expect(await overhang(download)).toBeLessThanOrEqual(0);
      expect(await overhang(p.getByTestId("task-files"))).toBeLessThanOrEqual(0);
    }, { allow: BEFORE_SIGN_IN });
  });
});
