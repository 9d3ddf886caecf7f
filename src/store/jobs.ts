import { sql, type Kysely, type RawBuilder } from "kysely";
import { JOB_MAX_ATTEMPTS, queueFlag, RUN_TASK_PREFIX } from "../worker/jobs.js";
import { taskColumns, type Database } from "./schema.js";

/** A task's graphile-worker job key, `task:<id>`, from an id column: at most one pending job per task. */
export function taskJobKey(idColumn: string): RawBuilder<string> {
  return sql<string>`'task:' || ${sql.ref(idColumn)}::text`;
}

/**
 * A graphile_worker.job_spec[] built from the rows of `source` (a CTE or table with id, queue, type,
 * run_at, priority and attempts), for graphile_worker.add_jobs inside the caller's statement, so a
 * task and its job are written in one transaction. Our priority is "higher first"; graphile-worker's
 * is "lower first", hence the negation. The job is filed under the task's (queue, type) identifier
 * and flagged with its queue (src/worker/jobs.ts says why).
 */
export function jobSpecsFrom(source: string): RawBuilder<unknown> {
  const from = sql.ref(source);
  return sql`(select array_agg(row(
      ${RUN_TASK_PREFIX}::text || s.queue || ':' || s.type /* = runTaskIdentifier(queue, type) */,
      json_build_object('taskId', s.id::text, 'attempt', s.attempts + 1),
      null::text,
      s.run_at,
      ${JOB_MAX_ATTEMPTS}::smallint,
      ${taskJobKey("s.id")},
      (-s.priority)::smallint,
      array[${queueFlag("")}::text || s.queue] /* = [queueFlag(queue)] */
    )::graphile_worker.job_spec) from ${from} as s)`;
}

/** The tasks columns as a RETURNING list (see taskColumns). */
export const returningTaskColumns = sql.raw(taskColumns.join(", "));

/**
 * Priority aging, so low priorities do not starve: a waiting task's job gets the effective
 * priority `priority + floor(time due / agingMs)` (graphile-worker's is its negation, clamped to
 * smallint). Run by the reconcile pass (once a minute); touches only available jobs that have been
 * due for at least agingMs and whose priority would improve, the longest-waiting first, at most
 * `limit` per pass. Returns how many jobs it changed.
 */
export async function agePriorities(db: Kysely<Database>, agingMs: number, limit = 5_000): Promise<number> {
  if (agingMs <= 0) return 0;
  const { rows } = await sql<{ n: string }>`
    with aged as (
      select j.id, greatest(-32768, least(32767,
          -t.priority - floor(extract(epoch from now() - t.run_at) * 1000 / ${agingMs}::int)))::smallint as priority
      from graphile_worker._private_jobs j
      join graphile_worker._private_tasks gt on gt.id = j.task_id and starts_with(gt.identifier, ${RUN_TASK_PREFIX}::text)
      join tasks t on t.id = (j.payload->>'taskId')::bigint
      where j.is_available = true and j.run_at <= now() - make_interval(secs => ${agingMs / 1000})
        and t.status in ('queued', 'retrying')
      order by j.run_at
      limit ${limit}
    ),
    changed as (
      update graphile_worker._private_jobs j set priority = aged.priority, updated_at = now()
      from aged where j.id = aged.id and j.priority > aged.priority and j.locked_at is null
      returning 1
    )
    select count(*) as n from changed
  `.execute(db);
  return Number(rows[0]?.n ?? 0);
}
