import { defineConfig } from "vitest/config";
import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * The files that take longest: started first, so the quick files run beside them instead of after
 * them. Those that mostly wait (a 90-second outage, minute ticks, worker processes) come before
 * those that keep the CPU busy (the bench, a 2 GiB capture, helm), and the probe, which must answer
 * through its attacks, starts beside waiters rather than beside those. Vitest orders by the previous
 * run's durations when it has them; a fresh clone (CI) has none and would start the largest files
 * first. `.ci/run` prints the 10 slowest files of each run.
 */
const startFirst = [
  // Five minutes of one start a second (issue 27's full-size rate target): the longest, and idle.
  "test/rate-limit-minutes.test.ts",
  "test/faults/database-faults.test.ts",
  "test/probe.test.ts",
  "test/schedule-heartbeat.test.ts",
  "test/schedule-processes.test.ts",
  "test/bench.test.ts",
  // Real agent, server and worker processes that mostly wait on leases and grace periods.
  "test/agent-liveness.test.ts",
  "test/agent.test.ts",
  "test/key-processes.test.ts",
  "test/labels.test.ts",
  "test/flow-processes.test.ts",
  "test/task-logs-range.test.ts",
  "test/faults/worker-faults.test.ts",
  "test/readme.test.ts",
  "test/deployment/helm-values.test.ts",
  "test/queue-processes.test.ts",
  "test/browser/dashboard.test.ts",
  "test/faults/poison-task.test.ts",
];

class SlowestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (file: TestSpecification) => {
      const i = startFirst.findIndex((name) => file.moduleId.endsWith(`/${name}`));
      return i === -1 ? startFirst.length : i;
    };
    return sorted.map((file, i) => ({ file, i })).sort((a, b) => rank(a.file) - rank(b.file) || a.i - b.i).map(({ file }) => file);
  }
}

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "src/**/*.test.ts", "ui/src/**/*.test.{ts,tsx}", "examples/*/test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Every file gets its own database cloned from a migrated template, so files can run in parallel.
    fileParallelism: true,
    // Vitest's default is one worker per core but one (availableParallelism - 1): on the 2-core
    // machine the files ran one after another. Most files wait (on PostgreSQL, child processes,
    // timers) far more than they compute, so four overlap well on 2 cores. VITEST_MAX_WORKERS overrides.
    maxWorkers: 4,
    // Files share their worker's module cache instead of a fresh process each: importing the
    // sources anew cost every file about 2 s of CPU (a quarter of the suite's). Files keep no state
    // in shared modules (each has its own database and servers); variables a test sets go through
    // vi.stubEnv and are restored after it.
    isolate: false,
    unstubEnvs: true,
    sequence: { sequencer: SlowestFirst },
  },
});
