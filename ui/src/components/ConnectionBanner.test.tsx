// @vitest-environment happy-dom
import { act, cleanup, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { backoffMs, reportOutage, reportRecovered } from "../services/connection";
import { ConnectionBanner } from "./ConnectionBanner";

afterEach(cleanup);

describe("ConnectionBanner", () => {
  it("shows while any source is reconnecting, with the attempt, and goes when all recovered", () => {
    render(<ConnectionBanner />);
    expect(screen.queryByTestId("reconnecting")).toBeNull();
    act(() => reportOutage({ source: "watch-task:1", attempt: 1, retryAt: 0 }));
    expect(screen.getByTestId("reconnecting").textContent).toMatch(/reconnecting…$/);
    act(() => reportOutage({ source: "api", attempt: 3, retryAt: 0 }));
    expect(screen.getByTestId("reconnecting").textContent).toContain("(attempt 3)");
    act(() => reportRecovered("api"));
    expect(screen.getByTestId("reconnecting")).toBeTruthy();
    act(() => reportRecovered("watch-task:1"));
    expect(screen.queryByTestId("reconnecting")).toBeNull();
    // The live region stays in the page, so screen readers hear the change.
    expect(screen.getByRole("status")).toBeTruthy();
  });

  it("backs off exponentially, with jitter, up to 10 s", () => {
    for (let attempt = 1; attempt <= 8; attempt++) {
      const base = Math.min(10_000, 500 * 2 ** (attempt - 1));
      const d = backoffMs(attempt);
      expect(d).toBeGreaterThanOrEqual(base * 0.75);
      expect(d).toBeLessThanOrEqual(base * 1.25);
    }
  });
});
