/**
 * The end of a chaos run, the same for `npm run chaos` and `npm run chaos:agents`: after the
 * reconciler's full pass no task job may be left, the report ends with the violations and a
 * verdict, and the process exits 0 only when there were none.
 */
import type { Kysely } from "kysely";
import type { Logger } from "../../src/logger.js";
import { leftoverJobs, pendingJobCounts } from "../../src/store/jobs.js";
import type { Database } from "../../src/store/schema.js";
import { reconcile } from "../../src/worker/reconcile.js";

type JobCounts = Awaited<ReturnType<typeof pendingJobCounts>>;

/** Runs the reconciler's full pass; each task job left after it is a violation. The counts before and after the pass. */
export async function checkJobsLeft(db: Kysely<Database>, logger: Logger, violations: string[]): Promise<{ before: JobCounts; after: JobCounts }> {
  const before = await pendingJobCounts(db);
  await reconcile(db, 3_000, logger);
  const after = await pendingJobCounts(db);
  if (after.jobs > 0) {
    violations.push(`${after.jobs} task jobs left (${after.locked} locked)`);
    for (const j of await leftoverJobs(db)) {
      violations.push(
        `job ${j.job_id} left: task ${j.task_id ?? "?"} ${j.task_status ?? "missing"}, job attempts ${j.attempts}, run_at ${j.run_at.toISOString()}, locked_by ${j.locked_by ?? "-"}, last_error ${JSON.stringify(j.last_error?.slice(0, 200) ?? null)}`,
      );
    }
  }
  return { before, after };
}

/** The report's last lines: the first 30 violations, then PASS or FAIL. */
export function verdictLines(violations: string[]): string[] {
  return [...violations.slice(0, 30).map((v) => `  VIOLATION ${v}`), violations.length === 0 ? "PASS" : `FAIL (${violations.length} violations)`];
}

/** Runs a chaos script's main and exits with its code (1 if it threw, with the stack on stderr). */
export function exitWith(name: string, main: () => Promise<number>): void {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`${name}: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
