import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const execFileAsync = promisify(execFile);

describe("npm run bench", () => {
  it("prints its report and nothing else", async () => {
    const { stdout, stderr } = await execFileAsync(
      process.execPath,
      [path.resolve("node_modules/tsx/dist/cli.mjs"), "scripts/bench.ts", "--tasks", "40", "--concurrency", "2", "--batch", "20", "--rescue-trials", "1", "--capture-lines", "2000", "--capture-shell-mb", "1"],
      { env: { PATH: process.env.PATH, HOME: process.env.HOME, CI: "true" }, timeout: 120_000 },
    );
    expect(stderr).toBe("");
    const lines = stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^bench: 40 tasks, concurrency 2/);
    expect(lines.slice(1).every((l) => /^ {2}(enqueue|execute|ours|capture|logs|rescue) /.test(l)), stdout).toBe(true);
    expect(lines).toHaveLength(10);
    expect(lines[7]).toMatch(/^ {2}capture {2}shell `yes \| head -c 1M`: 524288 lines in [\d.]+ s/);
    expect(lines[5]).toMatch(/^ {2}capture {2}one task, 2000 lines: chunks +\d+ lines\/s {3}a row per line +\d+ lines\/s/);
    expect(lines[8]).toMatch(/^ {2}logs {5}on 2000 stored lines .*tail 100 [\d.]+ ms/);
    expect(lines.at(-1)).toMatch(/^ {2}rescue after kill -9 .*1 trial/);
  }, 150_000);
});
