import { describe, expect, it } from "vitest";
import { parseDurationFlag } from "../src/cli/parse.js";
import { formatDuration, parseDuration } from "../src/duration.js";

// One grammar for the CLI's flags and schedule files, the dashboard's form and what both print.
describe("parseDuration", () => {
  it.each([
    ["250ms", 250],
    ["500ms", 500],
    ["30s", 30_000],
    ["1.5s", 1_500],
    ["5m", 300_000],
    ["1h30m", 5_400_000],
    ["1h2m5s", 3_725_000],
    ["2d", 172_800_000],
    ["1d2h", 93_600_000],
    ["90", 90_000],
    ["1.5", 1_500],
    [" 2m ", 120_000],
    ["0s", 0],
  ])("reads %j as %i ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(["", "  ", "5 minutes", "1h x", "1h 30m", "x1h", "1m30", "-5s", "5x", "ms", "1e3s", "1,5s", ".5s"])("refuses %j", (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });

  it("is the CLI's: a flag that is no duration is a usage error naming it", () => {
    expect(parseDurationFlag("1h30m", "--timeout")).toBe(5_400_000);
    expect(() => parseDurationFlag("5 minutes", "--timeout")).toThrow('--timeout: "5 minutes" is not a duration (e.g. 500ms, 30s, 5m, 1h30m)');
  });
});

describe("formatDuration", () => {
  it.each([
    [0, "0ms"],
    [250, "250ms"],
    [999, "999ms"],
    [1_000, "1s"],
    [1_500, "1.5s"],
    [12_000, "12s"],
    [12_400, "12s"],
    [59_000, "59s"],
    [60_000, "1m"],
    [120_000, "2m"],
    [200_000, "3m20s"],
    [3_600_000, "1h"],
    [3_725_000, "1h2m5s"],
    [5_400_000, "1h30m"],
    [86_400_000, "1d"],
    [90_061_000, "1d1h1m1s"],
  ])("writes %i ms as %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it("writes what parseDuration reads back", () => {
    for (const ms of [0, 1, 250, 999, 1_000, 1_500, 9_900, 12_000, 200_000, 3_725_000, 86_400_000, 90_061_000]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
  });
});
