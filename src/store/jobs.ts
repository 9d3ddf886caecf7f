import { sql, type RawBuilder } from "kysely";
import { JOB_MAX_ATTEMPTS, RUN_TASK } from "../queue/jobs.js";
import { taskColumns } from "./schema.js";

/** A task's graphile-worker job key, `task:<id>`, from an id column: at most one pending job per task. */
export function taskJobKey(idColumn: string): RawBuilder<string> {
  return sql<string>`'task:' || ${sql.ref(idColumn)}::text`;
}

/**
 * A graphile_worker.job_spec[] built from the rows of `source` (a CTE or table with id, run_at,
 * priority and attempts), for graphile_worker.add_jobs inside the caller's statement, so a task and
 * its job are written in one transaction. Our priority is "higher first"; graphile-worker's is
 * "lower first", hence the negation.
 */
export function jobSpecsFrom(source: string): RawBuilder<unknown> {
  const from = sql.ref(source);
  return sql`(select array_agg(row(
      ${RUN_TASK}::text,
      json_build_object('taskId', s.id::text, 'attempt', s.attempts + 1),
      null::text,
      s.run_at,
      ${JOB_MAX_ATTEMPTS}::smallint,
      ${taskJobKey("s.id")},
      (-s.priority)::smallint,
      null::text[]
    )::graphile_worker.job_spec) from ${from} as s)`;
}

/** The tasks columns as a RETURNING list (see taskColumns). */
export const returningTaskColumns = sql.raw(taskColumns.join(", "));
