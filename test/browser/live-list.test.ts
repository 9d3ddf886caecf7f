import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startTestApi, type TestApi } from "../helpers/api.js";
import { createTask } from "../helpers/factory.js";
import { expectNoConsoleErrors, launchBrowser, openPage } from "./harness.js";

vi.setConfig({ testTimeout: 180_000 });

let api: TestApi;
let browser: Browser;
beforeAll(async () => {
  [api, browser] = await Promise.all([startTestApi({ config: { watchHeartbeatMs: 1_000 } }), launchBrowser()]);
});
afterAll(async () => {
  await browser?.close();
  await api?.close();
});

describe("live task list", () => {
  it("follows one WatchTasks stream instead of polling, and shows new tasks as they are created", async () => {
    const w = await openPage(browser);
    const { page } = w;
    const calls: string[] = [];
    page.on("request", (r) => {
      const path = new URL(r.url()).pathname;
      if (path.startsWith("/task.v1.TaskService/")) calls.push(path.split("/").pop()!);
    });
    try {
      await createTask(api.client, { name: "before the page" });
      await page.goto(`${api.server.url}/tasks`);
      await page.getByText("before the page").first().waitFor();
      // Let the stream settle, then count: a quiet list makes no calls at all (the 2 s poll made 3).
      await new Promise((r) => setTimeout(r, 2_000));
      const settled = calls.length;
      await new Promise((r) => setTimeout(r, 6_500));
      expect(calls.slice(settled)).toEqual([]);
      expect(calls.filter((c) => c === "WatchTasks")).toHaveLength(1);

      // A change arrives through the stream and the list re-reads once.
      await createTask(api.client, { name: "made while watching" });
      await page.getByText("made while watching").first().waitFor({ timeout: 10_000 });
      expect(calls.filter((c) => c === "WatchTasks")).toHaveLength(1);
      expect(calls.slice(settled).filter((c) => c === "ListTasks").length).toBeGreaterThanOrEqual(1);
      expectNoConsoleErrors(w);
    } finally {
      await w.close();
    }
  });
});
