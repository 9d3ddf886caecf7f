import { sql, type Kysely } from "kysely";
import type { Database, TaskRow } from "./schema.js";
import { jobSpecsFrom, taskJobKey } from "./jobs.js";
import { forcing, transition } from "./transitions.js";

/**
 * Releases every graphile-worker lock held by worker processes that stopped heartbeating for longer
 * than the lease (killed, or cut off from the database), and forgets them. Their fetched-but-not-
 * started jobs become available to other workers at once; jobs of attempts they had started are
 * settled by settleLostAttempts. If such a process is in fact alive, nothing is run twice: every
 * claim and outcome is a guarded update.
 */
export async function releaseDeadWorkers(db: Kysely<Database>, leaseMs: number): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`
    with dead as (
      delete from workers
      where heartbeat_at < now() - make_interval(secs => ${leaseMs / 1000})
      returning id, graphile_ids
    ),
    released as (
      select graphile_worker.force_unlock_workers(array(select distinct unnest(graphile_ids) from dead))
    )
    select dead.id from dead ${forcing("released")}
  `.execute(db);
  return rows.map((r) => r.id);
}

/**
 * Settles attempts whose worker stopped heartbeating for longer than the lease: the attempt counts,
 * and the task goes to CANCELLED (a cancel was pending), RETRYING (re-enqueued at once: the worker
 * died, not the task) or FAILED (no attempts left), with a history row naming the lost worker. The
 * dead worker's graphile-worker lock on the job is released and the job removed, so nothing stays
 * locked for graphile-worker's 4-hour timeout.
 *
 * Safe against live workers and other reconcilers: candidates are locked with SKIP LOCKED and the
 * update is guarded on status; a slow worker that wakes up later finds its guarded outcome update
 * matching nothing, so one outcome is ever recorded.
 */
export async function settleLostAttempts(db: Kysely<Database>, leaseMs: number, limit: number): Promise<TaskRow[]> {
  return db.transaction().execute(async (trx) => {
    const { rows: lost } = await sql<{ id: string; job_id: string | null }>`
      select id, job_id from tasks
      where status = 'running' and (heartbeat_at < now() - make_interval(secs => ${leaseMs / 1000}) or heartbeat_at is null)
      order by heartbeat_at
      limit ${limit}
      for update skip locked
    `.execute(trx);
    if (lost.length === 0) return [];
    const ids = lost.map((r) => r.id);
    const jobIds = lost.flatMap((r) => (r.job_id ? [r.job_id] : []));
    if (jobIds.length > 0) {
      await sql`
        select graphile_worker.force_unlock_workers(array(
          select distinct locked_by from graphile_worker.jobs where id = any(${jobIds}::bigint[]) and locked_by is not null))
      `.execute(trx);
      await sql`select count(*) from graphile_worker.complete_jobs(${jobIds}::bigint[])`.execute(trx);
    }
    const lease = `${Math.round(leaseMs / 1000)}s`;
    const { rows } = await transition({
      with: [sql`lost as (select id as lost_id, worker_id as lost_worker from tasks where id = any(${ids}::bigint[]))`],
      change: {
        set: sql`status = (case
            when cancel_requested_at is not null then 'cancelled'
            when attempts < max_attempts then 'retrying'
            else 'failed' end)::task_status,
          last_error = case when cancel_requested_at is null then 'worker lost: no heartbeat for ' || ${lease} else last_error end,
          finished_at = case when cancel_requested_at is not null or attempts >= max_attempts then now() end,
          run_at = now(), worker_id = null, heartbeat_at = null, job_id = null`,
        from: sql`lost`,
        where: sql`id = lost_id and status = 'running'`,
      },
      details: sql`'attempt ' || attempts || ' lost: worker ' || coalesce(lost_worker, '?') || ' sent no heartbeat for ' || ${lease} || case status
          when 'cancelled' then '; cancellation completed' || coalesce(': ' || cancel_reason, '')
          when 'retrying' then '; retrying now'
          else '; giving up after ' || attempts || ' attempts' end`,
      enqueue: sql<boolean>`status = 'retrying'`,
    }).execute(trx);
    return rows;
  });
}

/**
 * Re-enqueues QUEUED/RETRYING tasks that have no runnable job (removed by hand, or exhausted by
 * graphile-worker's own retries while the database was unreachable). Tasks changed in the last few
 * seconds are left alone.
 */
export async function requeueOrphans(db: Kysely<Database>, limit: number): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`
    with orphans as (
      select t.id, t.run_at, t.priority, t.attempts from tasks t
      where t.status in ('queued', 'retrying') and t.cancel_requested_at is null
        and t.updated_at < now() - interval '5 seconds'
        and not exists (
          select 1 from graphile_worker.jobs j
          where j.key = ${taskJobKey("t.id")} and (j.locked_at is not null or j.attempts < j.max_attempts))
      order by t.id
      limit ${limit}
      for update of t skip locked
    ),
    jobs as (
      select count(*) as n from graphile_worker.add_jobs(${jobSpecsFrom("orphans")})
    )
    select orphans.id from orphans cross join jobs
  `.execute(db);
  return rows.map((r) => r.id);
}

/**
 * Finishes cancellations that a worker could not (the task went back to waiting, or its worker
 * died, before it saw the request): QUEUED/RETRYING tasks with a pending cancel become CANCELLED.
 */
export async function finishPendingCancels(db: Kysely<Database>, limit: number): Promise<string[]> {
  const { rows } = await transition({
    with: [
      sql`pending as (
        select id as pending_id from tasks
        where status in ('queued', 'retrying') and cancel_requested_at is not null
        limit ${limit}
        for update skip locked)`,
    ],
    change: {
      set: sql`status = 'cancelled', finished_at = now()`,
      from: sql`pending`,
      where: sql`id = pending_id and status in ('queued', 'retrying')`,
    },
    details: sql`'cancelled: the request arrived while the task was between attempts' || coalesce(': ' || cancel_reason, '')`,
    removeJob: true,
  }).execute(db);
  return rows.map((r) => r.id);
}
