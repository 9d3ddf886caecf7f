import { describe, expect, it } from "vitest";
import { formatDuration, formatRelative } from "./format";

describe("durations", () => {
  // The grammar itself (src/duration.ts, shared with the CLI) is tested in test/duration.test.ts.
  it("shows a missing duration as a dash", () => {
    expect(formatDuration(undefined)).toBe("—");
    expect(formatDuration(3_725_000)).toBe("1h2m5s");
  });

  it("says how long ago, against one clock", () => {
    const now = Date.UTC(2026, 0, 1, 12);
    expect(formatRelative(new Date(now - 2_000), now)).toBe("just now");
    expect(formatRelative(new Date(now - 3 * 60_000), now)).toMatch(/3 min/);
  });
});
