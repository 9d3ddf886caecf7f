import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startTestApi, type TestApi } from "../helpers/api.js";
import { expectNoConsoleErrors, launchBrowser, openPage, screenshot, screenshotPhone } from "./harness.js";

// A browser, a server and workers on two shared cores: allow for a slow machine.
vi.setConfig({ testTimeout: 180_000 });

const TOKEN = "dashboard-test-token";
let api: TestApi;
let browser: Browser;

beforeAll(async () => {
  [api, browser] = await Promise.all([startTestApi({ config: { apiTokens: [TOKEN] } }), launchBrowser()]);
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
