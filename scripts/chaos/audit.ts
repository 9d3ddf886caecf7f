import { sql, type Kysely } from "kysely";
import type { Database } from "../../src/store/schema.js";

/** A task with its whole history, for consistency checks (chaos test, operators' audits). */
export interface TaskWithHistory {
  id: string;
  name: string;
  status: string;
  attempts: number;
  last_error: string | null;
  history: { status: string; attempt: number; details: string }[];
}

/** Tasks whose name starts with `prefix`, each with its history in order. */
export async function loadTasksWithHistory(db: Kysely<Database>, prefix: string): Promise<TaskWithHistory[]> {
  const { rows } = await sql<TaskWithHistory>`
    select t.id, t.name, t.status, t.attempts, t.last_error,
      coalesce((select json_agg(json_build_object('status', h.status, 'attempt', h.attempt, 'details', h.details) order by h.id)
        from task_history h where h.task_id = t.id), '[]') as history
    from tasks t where t.name like ${`${prefix}%`}
    order by t.id
  `.execute(db);
  return rows;
}

/** graphile-worker task jobs (run:<queue>:<type>) still present, and how many of them are locked. */
export async function pendingJobCounts(db: Kysely<Database>): Promise<{ jobs: number; locked: number }> {
  const { rows } = await sql<{ jobs: number; locked: number }>`
    select count(*)::int as jobs, count(*) filter (where locked_at is not null)::int as locked
    from graphile_worker.jobs where starts_with(task_identifier, 'run:')
  `.execute(db);
  return rows[0] ?? { jobs: 0, locked: 0 };
}

/** A task job (run:<queue>:<type>) still in graphile-worker's table, with its task's state, for the chaos report. */
export interface LeftoverJob {
  job_id: string;
  task_id: string | null;
  task_status: string | null;
  attempts: number;
  run_at: Date;
  locked_by: string | null;
  last_error: string | null;
}

/** The task jobs left over (at most `limit`), so a failing audit says why they are there. */
export async function leftoverJobs(db: Kysely<Database>, limit = 10): Promise<LeftoverJob[]> {
  const { rows } = await sql<LeftoverJob>`
    select j.id::text as job_id, t.id::text as task_id, t.status::text as task_status, j.attempts, j.run_at, j.locked_by, j.last_error
    from graphile_worker._private_jobs j
    join graphile_worker._private_tasks k on k.id = j.task_id
    left join tasks t on t.id = (j.payload->>'taskId')::bigint
    where starts_with(k.identifier, 'run:')
    order by j.id limit ${limit}
  `.execute(db);
  return rows;
}
