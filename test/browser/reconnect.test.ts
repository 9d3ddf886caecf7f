import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startApiServer, type ApiServer } from "../../src/api/server.js";
import { loadConfig } from "../../src/config.js";
import { builtinPlugins } from "../../src/plugins/builtin.js";
import type { Workers } from "../../src/worker/runner.js";
import { openListener, type Listener } from "../../src/store/listen.js";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createClient } from "@connectrpc/connect";
import { TaskService } from "../../src/gen/task/v1/task_pb.js";
import { createTestDatabase, type TestDatabase } from "../helpers/database.js";
import { createTask } from "../helpers/factory.js";
import { waitFor } from "../helpers/wait.js";
import { startTestWorkers } from "../helpers/workers.js";
import { expectNoConsoleErrors, launchBrowser, openPage, screenshot } from "./harness.js";

// A browser, a server and workers on two shared cores: allow for a slow machine.
vi.setConfig({ testTimeout: 180_000 });

let database: TestDatabase;
let workers: Workers;
let browser: Browser;
let plugins: ReturnType<typeof builtinPlugins>;
let server: ApiServer | undefined;
let listener: Listener;

/** The API server on a given port (0: any), as the CLI's `serve` starts it. */
async function startServer(port: number): Promise<ApiServer> {
  const config = loadConfig({ host: "127.0.0.1", port, enableShell: true }, {});
  return startApiServer({ db: database.db, listener, registry: plugins.registry, config, logger: database.logger });
}

beforeAll(async () => {
  [database, browser] = await Promise.all([createTestDatabase(), launchBrowser()]);
  plugins = builtinPlugins(loadConfig({ enableShell: true }, {}), database.logger);
  listener = openListener(database.url, database.logger);
  server = await startServer(0);
  workers = await startTestWorkers(database);
});
afterAll(async () => {
  await browser?.close();
  await workers?.stop();
  await server?.close();
  await listener?.close();
  await plugins?.close();
  await database?.drop();
});

describe("server restart", () => {
  it("shows reconnecting while the server is down, then recovers and follows the task again", async () => {
    const first = server!;
    const client = createClient(TaskService, createConnectTransport({ baseUrl: first.url, httpVersion: "1.1" }));
    const task = await createTask(client, { name: "outlives a restart", type: "shell", parameters: { command: 'for i in $(seq 1 600); do echo "line $i"; sleep 0.1; done' } });
    const w = await openPage(browser);
    const { page } = w;
    // The list, which re-reads itself instead of streaming, shows the outage too.
    const list = await openPage(browser);
    try {
      await list.page.goto(`${first.url}/tasks`);
      await list.page.locator(`tr[data-task-id="${task.id}"]`).waitFor();
      await page.goto(`${first.url}/tasks/${task.id}`);
      await page.locator("[data-testid=log-lines] .log-line", { hasText: /^line 2$/m }).waitFor();
      expect(await page.getByTestId("reconnecting").count()).toBe(0);

      // While the server is away, Chromium logs every refused or cut connection: expected here.
      w.allow(/net::ERR_/);
      list.allow(/net::ERR_/);
      await first.close();
      server = undefined;
      await page.getByTestId("reconnecting").waitFor({ timeout: 20_000 });
      await screenshot(page, "reconnecting-desktop");
      await list.page.getByTestId("reconnecting").waitFor({ timeout: 30_000 });
      const before = await page.locator("[data-testid=log-lines] .log-line").count();

      server = await startServer(first.port);
      await page.getByTestId("reconnecting").waitFor({ state: "detached", timeout: 30_000 });
      await list.page.getByTestId("reconnecting").waitFor({ state: "detached", timeout: 30_000 });
      // The stream is back: lines written during and after the outage arrive, none twice.
      await waitFor(async () => (await page.locator("[data-testid=log-lines] .log-line").count()) > before + 5, "output after the restart");
      const seqs = await page.locator("[data-testid=log-lines] .log-line").evaluateAll((els) => els.map((e) => Number(e.getAttribute("data-seq"))));
      expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i));
      expectNoConsoleErrors(w);
      expectNoConsoleErrors(list);
    } finally {
      await list.close();
      await w.close();
      await client.cancelTask({ id: task.id }).catch(() => undefined);
    }
  });
});
