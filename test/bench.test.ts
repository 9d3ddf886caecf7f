import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";

/**
 * Runs the bench in its own process group, and on a timeout (or a failed test) kills the whole group:
 * a SIGTERM to the bench alone left its server, serve processes and PostgreSQL running.
 */
function runBench(args: string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH, HOME: process.env.HOME, CI: "true" }, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  const killGroup = () => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // already gone
    }
  };
  const timer = setTimeout(killGroup, timeoutMs);
  return new Promise((resolve, reject) => {
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      killGroup(); // anything it left behind
      if (code === 0) resolve({ stdout, stderr });
      else reject(new Error(`bench exited ${code ?? signal} (timeout ${timeoutMs} ms)\n${stderr.slice(-2000)}\n${stdout.slice(-2000)}`));
    });
  });
}

describe("npm run bench", () => {
  it("prints its table and writes the same figures as JSON, with the baselines measured in the same run", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "bench-test-"));
    const json = path.join(dir, "bench.json");
    try {
      const { stdout, stderr } = await runBench(
        [
          path.resolve("node_modules/tsx/dist/cli.mjs"),
          "scripts/bench.ts",
          ...["--n", "40", "--concurrency", "2", "--batch", "20", "--singles", "20", "--latency-samples", "5", "--query-tasks", "20", "--progress-tasks", "20", "--steady-seconds", "1", "--rescue-trials", "1", "--wakeup-trials", "1", "--key-rounds", "2", "--capture-lines", "2000", "--capture-shell-mb", "1", "--agent-tasks", "20", "--agent-rounds", "1", "--json", json],
        ],
        480_000,
      );
      expect(stderr).toBe("");
      const lines = stdout.trimEnd().split("\n");
      expect(lines[0]).toMatch(/^bench: 40 tasks, concurrency 2, .*task-cli runs dist$/);
      expect(lines.slice(1).every((l) => l.startsWith("  ")), stdout).toBe(true);
      for (const figure of [
        /^ {2}graphile-worker default: \{concurrentJobs:2\}; batched \(its performance guide\): \{concurrentJobs:2,maxPoolSize:3,localQueue:\{size:500\},completeJobBatchDelay:0,failJobBatchDelay:0\}$/,
        /drain \d+ pre-created .*gw batched \d+\/s +\d+\.\d\d {2}≥ 0\.4 (met|NOT met)$/,
        /drain vs graphile-worker defaults +\d+\/s +gw default \d+\/s +\d+\.\d\d/,
        /end to end: CreateTasks \+ drain +\d+\/s +gw batched \d+\/s +\d+\.\d\d {2}≥ 0\.3 (met|NOT met)$/,
        /CreateTask single, concurrency 8 +\d+\/s +bare INSERT \d+\/s +\d+\.\d\d {2}≥ 1\.0 (met|NOT met)$/,
        /run_query `select 1`, 20 \(serve -n 2\) +\d+\/s +bare pg pool \d+\/s +\d+\.\d\d {2}≥ 0\.5 (met|NOT met)$/,
        /^ {4}its ceiling: the no-op drain vs the same pool +\d+\/s +bare pg pool \d+\/s +\d+\.\d\d/,
        /^ {2}drain 40, tracing off \(serve -n 2\) +\d+\/s +prev release \d+\/s +\d+\.\d\d {2}within noise \(±\d+ %\): (yes|NO)$/,
        /^ {2}drain 40, tracing on \(OTLP to a receiver\) +\d+\/s +tracing off \d+\/s +\d+\.\d\d {2}cost -?\d+ % \(\d+ spans\)$/,
        /^ {4}previous release: [0-9a-f]{7,} \(the commit before src\/tracing\.ts\); best of 2 rounds, each: prev \d+, \d+, off \d+, \d+, on \d+, \d+\/s$/,
        /^ {2}CreateTask single at 8, with its audit row +\d+\/s +no audit insert \d+\/s +\d+\.\d\d {2}[+-][\d.]+ ms a create$/,
        /^ {4}best of 2 rounds of 20, each: audited \d+, \d+, no audit insert \d+, \d+, statement alone \d+, \d+\/s$/,
        /^ {4}vs the create statement alone +\d+\/s +statement alone \d+\/s +\d+\.\d\d/,
        /^ {2}drain with 20 keys, no limit hit +\d+\/s +no keys \d+\/s +\d+\.\d\d {2}≥ 0\.8 (met|NOT met)$/,
        /^ {4}under a rate limit never hit \(40 a drain\) +\d+\/s +no limit \d+\/s +\d+\.\d\d {2}\(no target; a claim statement a start\)$/,
        /^ {4}medians of 2 rounds of 40 \(order rotating\), ratios keyed \d+\.\d\d-\d+\.\d\d, limited \d+\.\d\d-\d+\.\d\d; each round none\/keyed\/limited: \d+\/\d+\/\d+, \d+\/\d+\/\d+\/s$/,
        /^ {2}CreateTask single at 8, with a key +\d+\/s +plain \d+\/s +\d+\.\d\d {2}\(no target; rounds \d+\.\d\d-\d+\.\d\d\)$/,
        /^ {4}with expire_after +\d+\/s +plain \d+\/s +\d+\.\d\d {2}\(no target; rounds \d+\.\d\d-\d+\.\d\d\)$/,
        /^ {4}with unique_while \(a window, new keys\) +\d+\/s +plain \d+\/s +\d+\.\d\d {2}\(no target; rounds \d+\.\d\d-\d+\.\d\d\)$/,
        /^ {4}medians of 2 rounds of 20 each \(order rotating\); each round plain\/keyed\/expiring\/unique: \d+\/\d+\/\d+\/\d+, \d+\/\d+\/\d+\/\d+\/s$/,
        /^ {2}rate limit hit: 20\/s burst 5, 40 tasks +40 started +allowed [\d.]+ +\d+\.\d\d {2}≥ 0\.95, ≤ 1\.00 (met|NOT met) \(busiest second \d+ ≤ 25\)$/,
        /^ {2}fairness: 20 of key B after 160 of A +[\d.]+ s +\d+ of A meanwhile +≤ 2 s (met|NOT met)$/,
        /no-ops reporting progress 10×, 20 +\d+\/s +plain no-ops \d+\/s +\d+\.\d\d {2}\(no target; [\d.]+ progress writes a task\)$/,
        /create → RUNNING idle +p50 [\d.]+ \/ p90 [\d.]+ \/ p99 [\d.]+/,
        /graphile-worker add → start +default p50 [\d.]+ .*\(n=5\)/,
        /graphile-worker add → start +batched p50 [\d.]+ .*\(n=5\)/,
        /idle start vs graphile-worker's better +p50 [\d.]+ vs [\d.]+ ms \((met|NOT met)\) +p99 [\d.]+ vs [\d.]+ ms \((met|NOT met)\)/,
        /create → RUNNING at \d+\/s +p50/,
        /peak RSS +serve -n 2 \d+ MB \(no-ops \d+, run_query \d+\) \(target ≤ 100 MB (met|NOT met)\)/,
        /task-cli task get +[\d.]+ s wall, median of 7; node -e 0: [\d.]+ s; ratio [\d.]+ \(target ≤ 2\.0 (met|NOT met)\)/,
        /^ {2}targets: \d+ of 17 met$/,
        /^ {2}drain 20 through 2 agents x 1 +\d+\/s +2 serve -n 1 \d+\/s +\d+\.\d\d {2}≥ 0\.5 (met|NOT met)$/,
        /^ {2}create → RUNNING idle p50, agent +[\d.]+ ms +serve [\d.]+ ms +\d+\.\d\d {2}≤ 2\.0 (met|NOT met)$/,
        /rescue after kill -9 .*1 trial.*target each ≤ 2000 ms/,
        /queue resume → last of 3 started +p50 [\d.]+ .*target max < 1500 ms/,
        /limited queue create → start +p50 [\d.]+ .*target max < 2000 ms/,
        /schedule tick → task created +p50 [\d.]+ .*target p50 < 1000, max < 10000 ms/,
        /^ {2}capture {2}shell `yes \| head -c 1M`: 524288 lines in [\d.]+ s/,
        /^ {2}capture {2}one task, 2000 lines: chunks +\d+ lines\/s {3}a row per line +\d+ lines\/s/,
      ]) {
        expect(lines.some((l) => figure.test(l)), `${figure} in\n${stdout}`).toBe(true);
      }
      // A target not met points at what bounds it.
      if (lines.some((l) => l.includes("NOT met"))) expect(lines.some((l) => /^ {2}not met: .+docs\/design\/hot-path\.md/.test(l)), stdout).toBe(true);
      const figures = JSON.parse(await readFile(json, "utf8"));
      expect(figures.drain.ratioToBatched).toBeCloseTo(figures.drain.perSec / figures.graphileBatched.drainPerSec, 6);
      expect(figures.createTaskSingle.ratio).toBeCloseTo(figures.createTaskSingle.perSec / figures.createTaskSingle.bareInsertPerSec, 6);
      expect(figures.endToEnd.ratioToBatched).toBeCloseTo(figures.endToEnd.perSec / figures.graphileBatched.drainPerSec, 6);
      expect(figures.runQuery.ratio).toBeCloseTo(figures.runQuery.perSec / figures.runQuery.barePoolPerSec, 6);
      expect(figures.graphileBatched.settings).toEqual({ concurrentJobs: 2, maxPoolSize: 3, localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 });
      expect(figures.graphileDefault.addToStartMs.n).toBe(5);
      const ratios = ["agentDrain", "agentIdleP50", "createTaskSingle", "drain", "endToEnd", "fairness", "idleP50", "idleP99", "keyedDrain", "rateLimitUse", "runQuery", "serveRss", "taskGet"];
      const timings = ["limited queue create → start", "queue resume → start", "rescue", "schedule tick → task"];
      expect(Object.keys(figures.targets).sort()).toEqual([...ratios, ...timings].sort());
      for (const name of ratios) expect(typeof figures.targets[name].met === "boolean" && Number.isFinite(figures.targets[name].value), name).toBe(true);
      for (const name of timings) expect(typeof figures.targets[name].met, name).toBe("boolean");
      expect(figures.idleStartMs.n).toBe(5);
      expect(figures.agents.ratio).toBeCloseTo(figures.agents.agentPerSec / figures.agents.workerPerSec, 6);
      expect(figures.agents.agentIdle.n).toBe(5);
      expect(figures.peakRssMb.serve).toBeGreaterThan(0);
      // Tracing on really traced: a process, run and outcome span per attempt at least, all received.
      expect(figures.tracing.perSec.on).toHaveLength(2);
      expect(figures.tracing.spans).toBeGreaterThanOrEqual(3 * 40 * 2);
      expect(figures.tracing.offToPrevious).toBeCloseTo(figures.tracing.best.off / figures.tracing.best.previous, 6);
      expect(figures.auditCost.auditRowRatio).toBeCloseTo(figures.auditCost.perSec.audited / figures.auditCost.perSec.noAuditInsert, 6);
      expect(figures.progress.ratio).toBeCloseTo(figures.progress.progressPerSec / figures.progress.plainPerSec, 6);
      // Ten reports in a tight loop, in an attempt shorter than the throttle's second, are stored once
      // (at its end); twice at most if a loaded machine stretches an attempt past the second. Never ten.
      expect(figures.progress.writesPerTask).toBeGreaterThan(0);
      expect(figures.progress.writesPerTask).toBeLessThanOrEqual(2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 540_000);
});
