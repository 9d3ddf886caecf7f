import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { watchTaskList } from "../src/cli/commands/list-watch.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { waitFor } from "./helpers/wait.js";

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi({ config: { watchHeartbeatMs: 300 } });
});
afterAll(async () => {
  await api?.close();
});

describe("task list --watch on a terminal", () => {
  it("redraws the table in place as tasks are created and change", async () => {
    let out = "";
    const io = { stdout: { write: (s: string) => (out += s) }, stderr: { write: () => true }, isTTY: true, columns: 120 };
    const stop = new AbortController();
    const g = { address: api.server.url, output: "table" } as Parameters<typeof watchTaskList>[1];
    const running = watchTaskList(io, g, { statuses: [], types: ["noop"], pageSize: 20 }, stop.signal);
    try {
      await waitFor(() => out.includes("\x1b[H\x1b[2J"), "the first draw", 20_000);
      const { task } = await api.client.createTask({ name: "drawn-live", type: "noop", runAt: { seconds: 4_000_000_000n, nanos: 0 } });
      const frame = () => out.slice(out.lastIndexOf("\x1b[H\x1b[2J"));
      await waitFor(() => /drawn-live\s.*QUEUED/.test(frame()), "the task in the latest frame", 20_000);
      await api.client.cancelTask({ id: task!.id });
      await waitFor(() => /drawn-live\s.*CANCELLED/.test(frame()), "its new status in the latest frame", 20_000);
      expect(frame()).toMatch(/1 shown \(1 total\)/);
    } finally {
      stop.abort();
      await running;
    }
  }, 60_000);
});
