import { TaskStatus } from "../../gen/task/v1/task_pb.js";
import type { LoadResult } from "./load.js";
import { percentiles, type Percentiles } from "./stats.js";

/** The end2end report, as printed and as written with --json. */
export interface End2EndReport {
  tasks: number;
  created: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  unfinished: number;
  timed_out: boolean;
  seconds: { create: number; total: number };
  throughput: { created_per_second: number; completed_per_second: number };
  latency_ms: { create_to_start: Percentiles; create_to_finish: Percentiles };
  by_type: Record<string, { succeeded: number; failed: number; other: number }>;
  failures: { type: string; count: number; sample_error: string }[];
  passed: boolean;
}

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

/** Computes the report; `allowFailures` failed tasks still pass. */
export function buildReport(result: LoadResult, requested: number, allowFailures: number): End2EndReport {
  const { tasks } = result;
  const count = (s: TaskStatus) => tasks.filter((t) => t.status === s).length;
  const succeeded = count(TaskStatus.SUCCEEDED);
  const failed = count(TaskStatus.FAILED);
  const cancelled = count(TaskStatus.CANCELLED);
  const unfinished = requested - succeeded - failed - cancelled;
  const finishes = tasks.flatMap((t) => (t.finishedAt ? [t.finishedAt] : []));
  const lastFinish = finishes.length > 0 ? Math.max(...finishes) : result.finishedAt;
  const createSeconds = Math.max(0.001, (result.createdAllAt - result.startedAt) / 1000);
  const totalSeconds = Math.max(0.001, (lastFinish - result.startedAt) / 1000);
  const byType: End2EndReport["by_type"] = {};
  const failures = new Map<string, { count: number; sample: string }>();
  for (const t of tasks) {
    const entry = (byType[t.type] ??= { succeeded: 0, failed: 0, other: 0 });
    if (t.status === TaskStatus.SUCCEEDED) entry.succeeded++;
    else if (t.status === TaskStatus.FAILED) {
      entry.failed++;
      const f = failures.get(t.type) ?? { count: 0, sample: t.lastError };
      f.count++;
      failures.set(t.type, f);
    } else entry.other++;
  }
  const ms = (values: number[]) => {
    const p = percentiles(values);
    return { p50: round(p.p50), p90: round(p.p90), p99: round(p.p99), max: round(p.max), count: p.count };
  };
  return {
    tasks: requested,
    created: tasks.length,
    succeeded,
    failed,
    cancelled,
    unfinished,
    timed_out: result.timedOut,
    seconds: { create: round(createSeconds, 2), total: round(totalSeconds, 2) },
    throughput: { created_per_second: round(tasks.length / createSeconds), completed_per_second: round((succeeded + failed + cancelled) / totalSeconds) },
    latency_ms: {
      create_to_start: ms(tasks.flatMap((t) => (t.startedAt ? [t.startedAt - t.createdAt] : []))),
      create_to_finish: ms(tasks.flatMap((t) => (t.finishedAt ? [t.finishedAt - t.createdAt] : []))),
    },
    by_type: byType,
    failures: [...failures].map(([type, f]) => ({ type, count: f.count, sample_error: f.sample })),
    passed: !result.timedOut && unfinished === 0 && cancelled === 0 && failed <= allowFailures,
  };
}

/** The report for people. */
export function formatReport(r: End2EndReport): string {
  const lat = (p: Percentiles) => `p50 ${p.p50}ms  p90 ${p.p90}ms  p99 ${p.p99}ms  max ${p.max}ms`;
  const lines = [
    `end2end: ${r.tasks} tasks — ${r.succeeded} succeeded, ${r.failed} failed, ${r.cancelled} cancelled, ${r.unfinished} unfinished${r.timed_out ? " (timed out)" : ""}`,
    `  created    ${r.created} in ${r.seconds.create}s (${r.throughput.created_per_second} tasks/s)`,
    `  completed  ${r.succeeded + r.failed + r.cancelled} in ${r.seconds.total}s (${r.throughput.completed_per_second} tasks/s)`,
    `  create→start   ${lat(r.latency_ms.create_to_start)}`,
    `  create→finish  ${lat(r.latency_ms.create_to_finish)}`,
    ...Object.entries(r.by_type).map(([type, c]) => `  ${type.padEnd(12)} ${c.succeeded} succeeded, ${c.failed} failed${c.other ? `, ${c.other} other` : ""}`),
    ...r.failures.map((f) => `  failures of ${f.type}: ${f.count}, e.g. "${f.sample_error}"`),
    r.passed ? "PASS" : "FAIL",
  ];
  return lines.join("\n");
}
