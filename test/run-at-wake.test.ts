import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Workers } from "../src/worker/runner.js";
import { WakeSchedule } from "../src/worker/wake.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { createTask, taskRow } from "./helpers/factory.js";
import { waitFor } from "./helpers/wait.js";
import { startTestWorkers } from "./helpers/workers.js";

// A poll so slow that only a wake-up at run_at can start these tasks within the test's deadline.
const POLL_MS = 60_000;
// Generous for a loaded machine; before the wake-up, these tasks waited for the poll (a minute here).
const TOLERANCE_MS = 1_500;

let api: TestApi;
let workers: Workers;
beforeAll(async () => {
  api = await startTestApi();
  workers = await startTestWorkers(api.database, { pollIntervalMs: POLL_MS, backoffBaseMs: 800, backoffMaxMs: 800 });
});
afterAll(async () => {
  await workers?.stop();
  await api?.close();
});

describe("jobs due later start at their time, not at the next poll", () => {
  it("a task scheduled a second ahead starts when due", async () => {
    const runAt = new Date(Date.now() + 1_000);
    const task = await createTask(api.client, { runAt: timestampFromDate(runAt) });
    const row = await waitFor(async () => {
      const r = await taskRow(api.database.db.kysely, task.id);
      return r.started_at !== null && r;
    }, "the scheduled task to start", 10_000);
    const lateness = row.started_at!.getTime() - row.run_at.getTime();
    expect(lateness).toBeGreaterThanOrEqual(0);
    expect(lateness).toBeLessThan(TOLERANCE_MS);
  });

  it("a retry starts when its backoff ends", async () => {
    const task = await createTask(api.client, { parameters: { fail: "boom" }, maxAttempts: 2 });
    const row = await waitFor(async () => {
      const r = await taskRow(api.database.db.kysely, task.id);
      return r.status === "failed" && r;
    }, "the failing task to use both attempts", 10_000);
    // run_at is the retry's due time, started_at the second attempt's start.
    const lateness = row.started_at!.getTime() - row.run_at.getTime();
    expect(lateness).toBeGreaterThanOrEqual(0);
    expect(lateness).toBeLessThan(TOLERANCE_MS);
  });
});

describe("WakeSchedule", () => {
  it("nudges once per due time, earliest first, and never after stop", async () => {
    const nudges: number[] = [];
    const wake = new WakeSchedule((n) => nudges.push(n), 3);
    const now = Date.now();
    wake.add(now + 120);
    wake.add(now + 20);
    wake.add(now + 20);
    wake.add(now + 5_000); // beyond capacity: dropped (the poll covers it)
    await waitFor(() => nudges.length >= 2, "two nudges", 2_000);
    expect(nudges).toEqual([2, 1]);
    wake.add(Date.now() + 20);
    wake.stop();
    await new Promise((r) => setTimeout(r, 100));
    expect(nudges).toEqual([2, 1]);
  });
});
