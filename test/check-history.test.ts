import { describe, expect, it } from "vitest";
import { checkTaskHistory, type AuditedTask } from "../scripts/chaos/check-history.js";

const task = (status: string, attempts: number, steps: string[]): AuditedTask => ({
  id: "1",
  status,
  attempts,
  history: steps.map((s) => {
    const [st, a] = s.split(":");
    return { status: st!, attempt: Number(a) };
  }),
});

describe("chaos history checker", () => {
  it("accepts legal histories", () => {
    expect(checkTaskHistory(task("succeeded", 1, ["queued:0", "running:1", "succeeded:1"]))).toEqual([]);
    expect(checkTaskHistory(task("failed", 2, ["queued:0", "running:1", "retrying:1", "running:2", "failed:2"]))).toEqual([]);
    expect(checkTaskHistory(task("succeeded", 1, ["queued:0", "running:1", "failed:1", "queued:0", "running:1", "succeeded:1"]))).toEqual([]);
    expect(checkTaskHistory(task("cancelled", 0, ["queued:0", "cancelled:0"]))).toEqual([]);
  });

  it("accepts pauses: held while waiting, stopped mid-attempt (resume continues the attempt), lost while paused", async () => {
    expect(checkTaskHistory(task("succeeded", 1, ["queued:0", "paused:0", "queued:0", "running:1", "succeeded:1"]))).toEqual([]);
    expect(checkTaskHistory(task("succeeded", 1, ["queued:0", "running:1", "paused:1", "running:1", "succeeded:1"]))).toEqual([]);
    expect(checkTaskHistory(task("succeeded", 2, ["queued:0", "running:1", "retrying:1", "paused:1", "retrying:1", "running:2", "succeeded:2"]))).toEqual([]);
    expect(checkTaskHistory(task("succeeded", 2, ["queued:0", "running:1", "paused:1", "paused:1", "retrying:1", "running:2", "succeeded:2"]))).toEqual([]);
    expect(checkTaskHistory(task("cancelled", 1, ["queued:0", "running:1", "paused:1", "cancelled:1"]))).toEqual([]);
    // A resume of a held task starts the next attempt; continuing one that was not running is a gap.
    expect(checkTaskHistory(task("succeeded", 1, ["queued:0", "paused:0", "running:0", "succeeded:0"]))).toContain("task 1: attempt 0 started after attempt 0 (row 2)");
    expect(checkTaskHistory(task("succeeded", 2, ["queued:0", "running:1", "paused:1", "running:2", "succeeded:2"]))).toContain(
      "task 1: resumed attempt 2 during attempt 1 (row 3)",
    );
    expect(checkTaskHistory(task("paused", 0, ["queued:0", "paused:0"]))).toEqual(["task 1: not terminal (paused)"]);
  });

  it("rejects gaps, double outcomes, illegal steps and a mismatched final state", () => {
    expect(checkTaskHistory(task("succeeded", 3, ["queued:0", "running:1", "retrying:1", "running:3", "succeeded:3"]))).toEqual([
      "task 1: attempt 3 started after attempt 1 (row 3)",
    ]);
    expect(checkTaskHistory(task("succeeded", 1, ["queued:0", "running:1", "succeeded:1", "succeeded:1"]))).toContain(
      "task 1: SUCCEEDED recorded more than once",
    );
    expect(checkTaskHistory(task("succeeded", 1, ["queued:0", "succeeded:1"]))[0]).toMatch(/illegal step queued -> succeeded/);
    expect(checkTaskHistory(task("running", 1, ["queued:0", "running:1"]))).toEqual(["task 1: not terminal (running)"]);
    expect(checkTaskHistory(task("failed", 1, ["queued:0", "running:1", "retrying:2"]))).toEqual([
      "task 1: retrying recorded for attempt 2 during attempt 1 (row 2)",
      "task 1: status failed but history ends retrying",
      "task 1: attempts 1 but history ends at attempt 2",
    ]);
  });
});
