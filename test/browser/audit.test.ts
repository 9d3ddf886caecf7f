import type { Browser } from "playwright-core";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { TaskService } from "../../src/gen/task/v1/task_pb.js";
import { QueueService } from "../../src/gen/task/v1/queue_pb.js";
import { startTestApi, type TestApi } from "../helpers/api.js";
import { taskRequest } from "../helpers/factory.js";
import { expectNoConsoleErrors, launchBrowser, openPage, screenshot, screenshotPhone, signIn } from "./harness.js";

/** The Audit view: admins see who changed what, filtered by actor, action and time, in the URL; others see no link. */

vi.setConfig({ testTimeout: 180_000 });

const ADMIN = "audit-view-admin-token";
const OPERATOR = "audit-view-operator-token";
let api: TestApi;
let browser: Browser;

const bearer =
  (token: string): Interceptor =>
  (next) =>
  (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };

/** Chromium logs each call refused before signing in (HTTP 401) as a console error; the prompt is expected. */
const REFUSED = /status of 401 \(Unauthorized\)/;

beforeAll(async () => {
  [api, browser] = await Promise.all([startTestApi({ config: { apiTokens: [`boss:admin:${ADMIN}`, `ci:operator:${OPERATOR}`] } }), launchBrowser()]);
});
afterAll(async () => {
  await browser?.close();
  await api?.close();
});


describe("the Audit view", () => {
  it("lists changes newest first with actor, action and resources, filters them in the URL, and is for admins only", async () => {
    const transport = (token: string) => createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1", interceptors: [bearer(token)] });
    const ci = createClient(TaskService, transport(OPERATOR));
    const { task } = await ci.createTask(taskRequest({ name: "audited-in-browser" }));
    await ci.cancelTask({ id: task!.id, reason: "not needed" });
    await createClient(QueueService, transport(ADMIN)).pauseQueue({ name: "reports" });

    const w = await openPage(browser);
    w.allow(REFUSED);
    const { page } = w;
    try {
      await signIn(page, api.server.url, ADMIN, "boss · admin");
      await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Audit" }).click();
      await page.getByRole("heading", { name: "Audit log" }).waitFor();
      const rows = page.locator("tr[data-audit-id]");
      await rows.first().waitFor();
      expect(await rows.count()).toBe(3);
      // Newest first: the queue pause, then the cancel, then the create.
      expect(await rows.getByTestId("action").allTextContents()).toEqual(["queue_pause", "cancel", "create"]);
      const cancel = rows.nth(1);
      expect(await cancel.getByTestId("actor").textContent()).toBe("ci (operator)");
      expect(await cancel.getByTestId("resources").textContent()).toBe(`task ${task!.id}`);
      await cancel.getByText("not needed").waitFor();
      await screenshot(page, "audit-desktop");

      // Filters live in the URL and survive a reload.
      await page.getByLabel("Action").selectOption("cancel");
      await page.waitForURL(/\/audit\?action=cancel$/);
      await page.locator("tr[data-audit-id]").nth(1).waitFor({ state: "detached" });
      expect(await page.locator("tr[data-audit-id]").getByTestId("action").allTextContents()).toEqual(["cancel"]);
      await page.getByLabel("Actor").fill("boss");
      await page.getByRole("button", { name: "Filter", exact: true }).click();
      await page.waitForURL(/\/audit\?actor=boss&action=cancel$/);
      await page.getByText("No changes match these filters.").waitFor();
      await page.getByRole("button", { name: "Clear filters" }).click();
      await page.waitForURL(/\/audit$/);
      await page.locator("tr[data-audit-id]").nth(2).waitFor();
      await page.goto(`${api.server.url}/audit?actor=ci&since=1h`);
      await page.getByTestId("identity").waitFor();
      await page.locator("tr[data-audit-id]").nth(1).waitFor();
      expect(await page.locator("tr[data-audit-id]").getByTestId("action").allTextContents()).toEqual(["cancel", "create"]);
      expect(await page.getByRole("button", { name: "Last 1h" }).getAttribute("aria-pressed")).toBe("true");
      expectNoConsoleErrors(w);
    } finally {
      await w.close();
    }
    await screenshotPhone(browser, `${api.server.url}/audit`, "audit-phone", async (p) => {
      const dialog = p.getByRole("dialog", { name: "API token required" });
      await dialog.getByLabel("Token").fill(ADMIN);
      await dialog.getByRole("button", { name: "Continue" }).click();
      await p.locator("tr[data-audit-id]").first().waitFor();
    }, { allow: REFUSED });

    // An operator has no Audit link, and the page says why instead of failing.
    const o = await openPage(browser);
    o.allow(REFUSED);
    try {
      await signIn(o.page, api.server.url, OPERATOR, "ci · operator");
      expect(await o.page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Audit" }).count()).toBe(0);
      await o.page.goto(`${api.server.url}/audit`);
      await o.page.getByTestId("identity").waitFor();
      await o.page.getByText("The audit log needs the admin role.").waitFor();
      expectNoConsoleErrors(o);
    } finally {
      await o.close();
    }
  });
});
