import { describe, expect, it } from "vitest";
import { Backoff, backoffDelayMs, retry, sleep } from "../src/backoff.js";

const policy = { baseMs: 10, maxMs: 80 };

describe("Backoff", () => {
  it("doubles the wait with each failure in a row, up to the cap, and starts over after a success", () => {
    const b = new Backoff(policy);
    expect([b.failed(), b.failed(), b.failed(), b.failed(), b.failed()]).toEqual([10, 20, 40, 80, 80]);
    expect(b.failures).toBe(5);
    b.succeeded();
    expect(b.failures).toBe(0);
    expect(b.failed()).toBe(10);
  });

  it("does not overflow after very many failures", () => {
    expect(backoffDelayMs(policy, 10_000)).toBe(80);
    expect(backoffDelayMs({ ...policy, jitter: true }, 10_000, () => 0)).toBe(40);
  });
});

describe("retry", () => {
  it("calls again after each retryable failure, waiting longer each time, and returns the first success", async () => {
    let calls = 0;
    const waits: number[] = [];
    const result = await retry(
      async () => {
        if (++calls < 4) throw new Error(`fail ${calls}`);
        return "done";
      },
      { policy, onRetry: (_err, delayMs) => waits.push(delayMs) },
    );
    expect(result).toBe("done");
    expect(calls).toBe(4);
    expect(waits).toEqual([10, 20, 40]);
  });

  it("lets a failure retryIf refuses propagate at once", async () => {
    let calls = 0;
    const step = () => (++calls, Promise.reject(new Error(calls === 1 ? "transient" : "fatal")));
    await expect(retry(step, { policy, retryIf: (err) => (err as Error).message === "transient" })).rejects.toThrow("fatal");
    expect(calls).toBe(2);
  });

  it("gives up after `attempts` calls with the last failure", async () => {
    let calls = 0;
    await expect(retry(() => Promise.reject(new Error(`fail ${++calls}`)), { policy, attempts: 3 })).rejects.toThrow("fail 3");
    expect(calls).toBe(3);
  });

  it("gives up rather than wait past its patience", async () => {
    let calls = 0;
    const started = Date.now();
    // Waits of 20 and 40 ms fit in 120 ms of patience; a third (80 ms more, after at least 60) would not.
    await expect(retry(() => Promise.reject(new Error(`fail ${++calls}`)), { policy: { baseMs: 20, maxMs: 1_000 }, patienceMs: 120 })).rejects.toThrow("fail 3");
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it("stops waiting when its signal aborts, with the last failure", async () => {
    const controller = new AbortController();
    let calls = 0;
    const started = Date.now();
    const done = retry(() => Promise.reject(new Error(`fail ${++calls}`)), { policy: { baseMs: 60_000, maxMs: 60_000 }, signal: controller.signal });
    setTimeout(() => controller.abort(), 20);
    await expect(done).rejects.toThrow("fail 1");
    expect(calls).toBe(1);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});

describe("sleep", () => {
  it("resolves early, without rejecting, when its signal aborts", async () => {
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(), 10);
    await sleep(60_000, controller.signal);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
