// @vitest-environment happy-dom
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { cleanup, render } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { TaskThroughputBucketSchema } from "../../../src/gen/task/v1/throughput_pb.js";
import { ThroughputChart, throughputTotals } from "./ThroughputChart";

afterEach(cleanup);

const start = Date.UTC(2026, 0, 1, 12);
const bucket = (i: number, succeeded: bigint, failed = 0n) => create(TaskThroughputBucketSchema, { startTime: timestampFromDate(new Date(start + i * 60_000)), succeeded, failed });

describe("ThroughputChart", () => {
  it("writes out each outcome's total and draws a bar per minute scaled to the busiest one", () => {
    const buckets = [bucket(0, 2n), bucket(1, 0n), bucket(2, 6n, 2n)];
    expect(throughputTotals(buckets)).toEqual({ succeeded: 8n, failed: 2n, cancelled: 0n, retried: 0n });
    const { container } = render(<ThroughputChart buckets={buckets} />);
    expect(container.querySelector('[data-outcome="succeeded"]')!.textContent).toBe("8");
    expect(container.querySelector('[data-outcome="failed"]')!.textContent).toBe("2");
    const bars = [...container.querySelectorAll("rect[fill^='var(--']")];
    // 2, 6 and 2: three bars, none for the empty minute; the busiest minute (8) fills the height.
    expect(bars).toHaveLength(3);
    const heights = bars.map((b) => Number(b.getAttribute("height")));
    expect(heights[1]! + heights[2]!).toBeCloseTo(116);
    expect(heights[0]).toBeCloseTo(116 / 4);
    expect(container.querySelectorAll("title")[2]!.textContent).toContain("6 succeeded, 2 failed");
  });
});
