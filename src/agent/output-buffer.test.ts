import { mkdtempSync, readdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { OutputBuffer, type BufferedLine } from "./output-buffer.js";

describe("OutputBuffer", () => {
  it("keeps lines past the memory cap on disk and gives every line back once, in order, numbered", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "output-buffer-"));
    const buffer = new OutputBuffer(dir, 7n, 2, 3);
    for (let i = 0; i < 2_500; i++) buffer.add(i % 2 ? "stderr" : "stdout", `line ${i}`);
    expect(buffer.spilled).toBe(true);
    expect(buffer.size).toBe(2_500);
    const got: BufferedLine[] = [];
    let failedOnce = false;
    let addedLate = false;
    for (let batch = buffer.take(400); batch.length > 0; batch = buffer.take(400)) {
      // A send that failed: the batch comes back in front.
      if (!failedOnce && got.length > 1_000) {
        failedOnce = true;
        buffer.giveBack(batch);
        continue;
      }
      got.push(...batch);
      // Lines written while earlier ones wait go after them.
      if (got.length >= 800 && !addedLate) {
        addedLate = true;
        buffer.add("stdout", "late");
      }
    }
    expect(failedOnce).toBe(true);
    expect(got.map((l) => l.n)).toEqual(Array.from({ length: 2_501 }, (_, i) => i));
    expect(got.at(-1)?.line).toBe("late");
    expect(got[1]).toEqual({ n: 1, stream: "stderr", line: "line 1" });
    // Once everything is taken, the file is gone and new lines stay in memory.
    expect(readdirSync(dir)).toEqual([]);
    buffer.add("stdout", "after");
    expect(buffer.spilled).toBe(false);
    expect(buffer.take(10)).toEqual([{ n: 2_501, stream: "stdout", line: "after" }]);
  });
});
