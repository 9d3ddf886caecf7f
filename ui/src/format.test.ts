import { describe, expect, it } from "vitest";
import { formatDuration, formatRelative, parseDuration } from "./format";

describe("durations", () => {
  it("parses what people type for a timeout", () => {
    expect(parseDuration("90")).toBe(90_000);
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration(" 2m ")).toBe(120_000);
    expect(parseDuration("")).toBeUndefined();
    expect(parseDuration("5 minutes")).toBeUndefined();
    expect(parseDuration("1h x")).toBeUndefined();
  });

  it("formats them back", () => {
    expect(formatDuration(250)).toBe("250ms");
    expect(formatDuration(300_000)).toBe("5m");
    expect(formatDuration(3_725_000)).toBe("1h 2m 5s");
    expect(formatDuration(undefined)).toBe("—");
    expect(parseDuration(formatDuration(3_725_000).replaceAll(" ", ""))).toBe(3_725_000);
  });

  it("says how long ago, against one clock", () => {
    const now = Date.UTC(2026, 0, 1, 12);
    expect(formatRelative(new Date(now - 2_000), now)).toBe("just now");
    expect(formatRelative(new Date(now - 3 * 60_000), now)).toMatch(/3 min/);
  });
});
