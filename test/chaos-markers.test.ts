import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { overlaps, readMarkers } from "../scripts/chaos/markers.js";

// The agent chaos run's overlap check (scripts/chaos/markers.ts): each copy of a task appends
// $EPOCHREALTIME to a file of its own; two copies of one task whose intervals meet ran at once.

describe("the chaos run's marker files", () => {
  it("find two copies of one task that ran at once, and only those", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "markers-"));
    try {
      // Task 1: attempt 1 killed at 100.3 s, attempt 2 from 104 s: apart. Task 2: attempt 1 still
      // writing (a copy that outlived its lease) after attempt 2 began. Task 3: one copy.
      await writeFile(path.join(dir, "1.1.500"), "100.000000\n100.100000\n100.300000\n");
      await writeFile(path.join(dir, "1.2.600"), "104.000000\n104.100000\n");
      await writeFile(path.join(dir, "2.1.700"), "200.000000\n201.000000\n202.500000\n");
      await writeFile(path.join(dir, "2.2.800"), "202.000000\n202.100000\n");
      // The separator follows the locale in some shells.
      await writeFile(path.join(dir, "3.1.900"), "300,000000\n300,200000\n");
      const runs = await readMarkers(dir);
      expect(runs).toHaveLength(5);
      expect(runs.find((r) => r.taskId === "3")).toMatchObject({ from: 300_000, to: 300_200 });
      const found = overlaps(runs);
      expect(found).toHaveLength(1);
      expect(found[0]).toMatchObject({ taskId: "2", first: "1.700", second: "2.800" });
      expect(found[0]!.overlapMs).toBeCloseTo(500, 3);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
