// @vitest-environment happy-dom
import { create } from "@bufbuild/protobuf";
import { cleanup, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { TaskProgressSchema } from "../../../src/gen/task/v1/task_pb.js";
import { ProgressBar } from "./ProgressBar";

afterEach(cleanup);

describe("ProgressBar", () => {
  it("shows the bar, the percentage and the message; detailed, the rate and time left", () => {
    const progress = create(TaskProgressSchema, { fraction: 0.42, message: "4,200 of 10,000 rows", ratePerSecond: 0.005, estimatedRemaining: { seconds: 116n, nanos: 0 } });
    render(<ProgressBar progress={progress} detailed />);
    const bar = screen.getByRole("progressbar");
    expect(bar.getAttribute("value")).toBe("0.42");
    expect(bar.getAttribute("aria-label")).toBe("42% done: 4,200 of 10,000 rows");
    const text = screen.getByTestId("task-progress").textContent;
    expect(text).toContain("42% 4,200 of 10,000 rows");
    expect(text).toContain("0.5%/s · about 1m56s left");
  });

  it("says it is still estimating before there is a trend, and shows no trend in a list", () => {
    render(<ProgressBar progress={create(TaskProgressSchema, { fraction: 0.1 })} detailed />);
    expect(screen.getByTestId("task-progress").textContent).toContain("estimating time left…");
    cleanup();
    render(<ProgressBar progress={create(TaskProgressSchema, { fraction: 0.1, ratePerSecond: 0.01 })} />);
    expect(screen.getByTestId("task-progress").textContent).toBe("10%");
  });
});
