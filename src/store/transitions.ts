import { sql, type Kysely } from "kysely";
import type { Database, TaskRow } from "./schema.js";
import { jobSpecsFrom, taskJobKey } from "./jobs.js";

/** Channel on which cancellation requests for running tasks are announced to workers. */
export const CANCEL_CHANNEL = "task_cancel";

/**
 * Cancels a task that has not started (QUEUED or RETRYING): status, history row and removal of its
 * pending job in one statement. Returns undefined when the task is not in one of those states.
 */
export async function cancelWaitingTask(db: Kysely<Database>, id: string, details: string, reason: string | null): Promise<TaskRow | undefined> {
  const { rows } = await sql<TaskRow>`
    with updated as (
      update tasks set status = 'cancelled', finished_at = now(), updated_at = now(),
        cancel_requested_at = coalesce(cancel_requested_at, now()), cancel_reason = coalesce(${reason}, cancel_reason)
      where id = ${id} and status in ('queued', 'retrying')
      returning *
    ),
    history as (
      insert into task_history (task_id, status, attempt, details)
      select id, status, attempts, ${details} from updated
    ),
    removed as (
      select graphile_worker.remove_job(${taskJobKey("id")}) from updated
    )
    select updated.* from updated where (select count(*) from removed) >= 0
  `.execute(db);
  return rows[0];
}

/**
 * Asks the worker running a task to abort it: marks cancel_requested_at (and the reason, which the
 * CANCELLED history row will quote) and notifies workers. The
 * worker records the CANCELLED outcome (and the reconciler does if that worker is gone).
 * Returns undefined when the task is not RUNNING.
 */
export async function requestCancelRunningTask(db: Kysely<Database>, id: string, reason: string | null): Promise<TaskRow | undefined> {
  const { rows } = await sql<TaskRow>`
    with updated as (
      update tasks set cancel_requested_at = coalesce(cancel_requested_at, now()), cancel_reason = coalesce(${reason}, cancel_reason), updated_at = now()
      where id = ${id} and status = 'running'
      returning *
    )
    select updated.* from updated where (select count(*) from (select pg_notify(${CANCEL_CHANNEL}, id::text) from updated) n) >= 0
  `.execute(db);
  return rows[0];
}

/**
 * Puts a FAILED or CANCELLED task back in the queue with its attempts reset, writes the history row
 * and enqueues its job, in one statement. Returns undefined when the task is in another state.
 */
export async function requeueFinishedTask(db: Kysely<Database>, id: string, details: string): Promise<TaskRow | undefined> {
  const { rows } = await sql<TaskRow>`
    with updated as (
      update tasks set
        status = 'queued', attempts = 0, lost_attempts = 0 /* issue 17 */, last_error = null, result = null, worker_id = null,
        heartbeat_at = null, cancel_requested_at = null, started_at = null, finished_at = null,
        run_at = now(), updated_at = now()
      where id = ${id} and status in ('failed', 'cancelled')
      returning *
    ),
    history as (
      insert into task_history (task_id, status, attempt, details)
      select id, status, attempts, ${details} from updated
    ),
    jobs as (
      select count(*) as n from graphile_worker.add_jobs(${jobSpecsFrom("updated")})
    )
    select updated.* from updated cross join jobs
  `.execute(db);
  return rows[0];
}
