import { describe, expect, it } from "vitest";
import { backoffDelayMs } from "../../src/backoff.js";

const policy = { baseMs: 1_000, maxMs: 60_000, jitter: true };
const lowest = () => 0;
const highest = () => 0.999_999;
const middle = () => 0.5;

describe("backoffDelayMs", () => {
  it("doubles with each attempt", () => {
    const delays = [1, 2, 3, 4, 5].map((attempt) => backoffDelayMs(policy, attempt, middle));
    expect(delays).toEqual([750, 1_500, 3_000, 6_000, 12_000]);
  });

  it("stays between half the exponential delay and all of it", () => {
    for (const attempt of [1, 2, 3, 4, 5, 6]) {
      const exp = policy.baseMs * 2 ** (attempt - 1);
      expect(backoffDelayMs(policy, attempt, lowest)).toBe(exp / 2);
      expect(backoffDelayMs(policy, attempt, highest)).toBe(exp);
    }
  });

  it("is capped at maxMs, however many attempts failed", () => {
    expect(backoffDelayMs(policy, 7, highest)).toBe(60_000); // 64 s uncapped
    expect(backoffDelayMs(policy, 7, lowest)).toBe(30_000);
    expect(backoffDelayMs(policy, 1_000, highest)).toBe(60_000);
    expect(backoffDelayMs(policy, 1_000, lowest)).toBe(30_000);
  });

  it("treats attempt 0 like the first attempt", () => {
    expect(backoffDelayMs(policy, 0, highest)).toBe(1_000);
  });

  it("spreads retries of tasks that failed together", () => {
    const values = [0.1, 0.4, 0.7];
    const delays = values.map((v) => backoffDelayMs(policy, 4, () => v));
    expect(new Set(delays).size).toBe(3);
    expect(delays).toEqual([4_400, 5_600, 6_800]);
  });

  it("returns whole milliseconds", () => {
    expect(backoffDelayMs({ baseMs: 3, maxMs: 100, jitter: true }, 1, () => 0.3)).toBe(2);
  });
});
