import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { createLogger } from "../src/logger.js";
import { ClaimLoop } from "../src/worker/claim-loop.js";
import type { TaskRow } from "../src/store/schema.js";

// The loop's own bookkeeping (slots, one claim in flight, retries, shutdown), with a claim that
// hands out rows from a list. The claim statement itself runs against PostgreSQL in
// test/batched-attempts.test.ts, the loop with real workers everywhere else.

const logger = createLogger("silent");
const row = (id: number) => ({ id: String(id) }) as TaskRow;

/** A claim that hands out `total` rows, records each request, and can be told to fail. */
function source(total: number) {
  let next = 1;
  const state = { requests: [] as number[], inFlight: 0, maxInFlight: 0, failNext: 0 };
  const claim = async (limit: number) => {
    state.requests.push(limit);
    state.inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
    await sleep(2);
    state.inFlight--;
    if (state.failNext > 0) {
      state.failNext--;
      throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    }
    const rows: TaskRow[] = [];
    while (rows.length < limit && next <= total) rows.push(row(next++));
    return rows;
  };
  return { claim, state };
}

async function until(check: () => boolean, what: string, timeoutMs = 5_000) {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe("ClaimLoop", () => {
  it("runs every claimed task, never more than its slots at once, with one claim in flight", async () => {
    const { claim, state } = source(200);
    let running = 0;
    let maxRunning = 0;
    const done: string[] = [];
    const loop = new ClaimLoop({
      slots: 5,
      claim,
      run: async (task) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await sleep(Math.random() * 4);
        running--;
        done.push(task.id);
      },
      logger,
    });
    loop.start();
    await until(() => done.length === 200, "200 tasks to run");
    await loop.stop(1_000);
    expect(new Set(done).size).toBe(200);
    expect(maxRunning).toBeLessThanOrEqual(5);
    expect(state.maxInFlight).toBe(1);
    // Each claim asks for exactly the free slots.
    expect(Math.max(...state.requests)).toBe(5);
    expect(Math.min(...state.requests)).toBeGreaterThanOrEqual(1);
  });

  it("claims nothing before start, and again only when nudged once the work ran out", async () => {
    const { claim, state } = source(3);
    const loop = new ClaimLoop({ slots: 10, claim, run: async () => undefined, logger });
    loop.nudge();
    await sleep(20);
    expect(state.requests).toEqual([]);
    loop.start();
    await until(() => state.requests.length >= 2, "the first claims");
    await sleep(30);
    const settled = state.requests.length;
    loop.nudge();
    await until(() => state.requests.length === settled + 1, "the nudged claim");
    await loop.stop(1_000);
  });

  it("a failed claim is retried with backoff, and the work then runs", async () => {
    const { claim, state } = source(4);
    state.failNext = 2;
    const done: string[] = [];
    const loop = new ClaimLoop({ slots: 4, claim, run: async (task) => void done.push(task.id), logger });
    const t0 = Date.now();
    loop.start();
    await until(() => done.length === 4, "the tasks after two failed claims");
    // 250 ms, then 500 ms.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(700);
    await loop.stop(1_000);
  });

  it("stop waits for running attempts, and fires their shutdown signal once the grace period is over", async () => {
    const { claim } = source(2);
    const ended: string[] = [];
    const loop = new ClaimLoop({
      slots: 2,
      claim,
      run: async (task, shutdown) => {
        if (task.id === "1") await sleep(50);
        else await new Promise((resolve) => shutdown.addEventListener("abort", resolve, { once: true }));
        ended.push(`${task.id}:${shutdown.aborted ? "aborted" : "finished"}`);
      },
      logger,
    });
    loop.start();
    await until(() => loop.running === 2, "both attempts to start");
    const t0 = Date.now();
    await loop.stop(300);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(ended.sort()).toEqual(["1:finished", "2:aborted"]);
    expect(loop.running).toBe(0);
  });
});
