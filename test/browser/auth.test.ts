import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { startTestApi, type TestApi } from "../helpers/api.js";
import { taskRequest } from "../helpers/factory.js";
import { bearerToken } from "../../src/sdk/client.js";
import { expectNoConsoleErrors, launchBrowser, openPage, screenshot, screenshotPhone, signIn } from "./harness.js";

// A browser, a server and workers on two shared cores: allow for a slow machine.
vi.setConfig({ testTimeout: 180_000 });

const TOKEN = "dashboard-test-token";
const READER = "dashboard-reader-token";
const OPERATOR = "dashboard-operator-token";
let api: TestApi;
let browser: Browser;

beforeAll(async () => {
  [api, browser] = await Promise.all([startTestApi({ config: { apiTokens: [TOKEN, `viewer:reader:${READER}`, `ops:operator:${OPERATOR}`] }, interceptors: [bearerToken(TOKEN)] }), launchBrowser()]);
});
afterAll(async () => {
  await browser?.close();
  await api?.close();
});

/** Chromium logs each refused call (HTTP 401) as a console error; these are the point of the test. */
const REFUSED = /status of 401 \(Unauthorized\)/;

describe("dashboard with API tokens", () => {
  it("serves the page without a token, but no data", async () => {
    const page = await fetch(`${api.server.url}/tasks`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('<div id="root">');
    expect(html).not.toContain(TOKEN);
    const api401 = await fetch(`${api.server.url}/task.v1.TaskService/GetTaskStatusCounts`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(api401.status).toBe(401);
  });

  it("asks for a token, refuses a wrong one clearly, and works with the right one", async () => {
    const w = await openPage(browser);
    w.allow(REFUSED);
    const { page } = w;
    try {
      await page.goto(`${api.server.url}/`);
      const dialog = page.getByRole("dialog", { name: "API token required" });
      await dialog.waitFor();
      // Nothing behind the prompt asks for or shows data.
      expect(await page.getByTestId("status-counts").count()).toBe(0);
      expect(await page.getByRole("alert").count()).toBe(0);
      await screenshot(page, "token-prompt-desktop");

      await dialog.getByLabel("Token").fill("not-the-token");
      await dialog.getByRole("button", { name: "Continue" }).click();
      await dialog.getByRole("alert").getByText("The server refused this token").waitFor();
      expect(await dialog.isVisible()).toBe(true);

      await dialog.getByLabel("Token").fill(TOKEN);
      await dialog.getByRole("button", { name: "Continue" }).click();
      await dialog.waitFor({ state: "detached" });
      await page.locator('[data-status="TOTAL"]', { hasText: "0" }).waitFor();

      // The token lasts for the tab: a reload does not ask again.
      await page.reload();
      await page.locator('[data-status="TOTAL"]', { hasText: "0" }).waitFor();
      expect(await page.getByRole("dialog").count()).toBe(0);

      // Signing out forgets it.
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.getByRole("dialog", { name: "API token required" }).waitFor();
      expectNoConsoleErrors(w);
    } finally {
      await w.close();
    }
    await screenshotPhone(browser, `${api.server.url}/`, "token-prompt-phone", (p) => p.getByRole("dialog").waitFor(), { allow: REFUSED });
  });
});



describe("dashboard by role", () => {
  it("shows a reader its role and no action it may not take", async () => {
    const { task } = await api.client.createTask(taskRequest({ name: "role-queued", runAt: timestampFromDate(new Date(4_000_000_000_000)) }));
    const w = await openPage(browser);
    w.allow(REFUSED);
    const { page } = w;
    try {
      await signIn(page, api.server.url, READER, "viewer · reader");
      expect(await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "New task" }).count()).toBe(0);

      await page.goto(`${api.server.url}/tasks`);
      await page.getByTestId("identity").waitFor();
      await page.locator(`[data-task-id="${task!.id}"]`).waitFor();
      expect(await page.getByRole("link", { name: "New task" }).count()).toBe(0);
      expect(await page.getByRole("checkbox").count()).toBe(0);

      await page.goto(`${api.server.url}/tasks/${task!.id}`);
      await page.getByTestId("identity").waitFor();
      await page.getByText("role-queued").first().waitFor();
      for (const name of ["Cancel", "Pause", "Retry"]) expect(await page.getByRole("button", { name, exact: true }).count(), name).toBe(0);
      expect(await page.getByRole("link", { name: "Clone" }).count()).toBe(0);

      await page.goto(`${api.server.url}/queues`);
      await page.getByTestId("identity").waitFor();
      await page.locator('[data-queue="default"]').waitFor();
      expect(await page.locator('[data-queue="default"]').getByRole("button").count()).toBe(0);
      await page.locator('[data-queue="default"]').getByTestId("limit").waitFor();
      await screenshot(page, "role-reader-queues");
      expectNoConsoleErrors(w);
    } finally {
      await w.close();
    }
  });

  it("shows an operator its actions, but not deletes, queue limits or shell tasks", async () => {
    const { task } = await api.client.createTask(taskRequest({ name: "role-operator", runAt: timestampFromDate(new Date(4_000_000_000_000)) }));
    const w = await openPage(browser);
    w.allow(REFUSED);
    const { page } = w;
    try {
      await signIn(page, api.server.url, OPERATOR, "ops · operator");
      await page.goto(`${api.server.url}/tasks/${task!.id}`);
      await page.getByRole("button", { name: "Cancel", exact: true }).waitFor();
      await page.getByRole("button", { name: "Pause", exact: true }).waitFor();
      await page.getByRole("link", { name: "Clone" }).waitFor();

      await page.goto(`${api.server.url}/tasks`);
      await page.getByRole("checkbox", { name: `Select task #${task!.id}` }).check();
      const bar = page.getByRole("region", { name: "Selected tasks" });
      await bar.getByRole("button", { name: /^Cancel/ }).waitFor();
      expect(await bar.getByRole("button", { name: /^Delete/ }).count()).toBe(0);

      await page.goto(`${api.server.url}/queues`);
      await page.locator('[data-queue="default"]').getByRole("button", { name: "Pause" }).waitFor();
      expect(await page.locator('[data-queue="default"]').locator("form").count()).toBe(0);

      await page.goto(`${api.server.url}/tasks/new`);
      const shell = page.getByRole("option", { name: "shell (needs role admin)" });
      expect(await shell.isDisabled()).toBe(true);
      expectNoConsoleErrors(w);
    } finally {
      await w.close();
    }
  });

  it("shows an admin every action, deletes included", async () => {
    const w = await openPage(browser);
    w.allow(REFUSED);
    const { page } = w;
    try {
      await signIn(page, api.server.url, TOKEN, "config-1 · admin");
      await page.goto(`${api.server.url}/tasks`);
      await page.getByRole("checkbox").first().check();
      await page.getByRole("region", { name: "Selected tasks" }).getByRole("button", { name: /^Delete/ }).waitFor();
      await page.goto(`${api.server.url}/queues`);
      await page.locator('[data-queue="default"]').locator("form").waitFor();
      expectNoConsoleErrors(w);
    } finally {
      await w.close();
    }
  });
});
