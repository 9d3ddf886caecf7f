import { sql, type Kysely } from "kysely";
import type { Database, TaskRow } from "./schema.js";
import { RUN_TASK_PREFIX } from "../worker/jobs.js";
import { jobSpecsFrom, taskJobKey } from "./jobs.js";
import { forcing, transition, WAITING } from "./transitions.js";

/** How the reconciler judges a worker process dead (issue 17). */
export interface DeathRule {
  /** TASK_LEASE_MS: a worker (or attempt) silent for this long is lost. */
  leaseMs: number;
  /**
   * When this reconciler started, on the database's clock. Together with pg_postmaster_start_time()
   * it bounds what a lease is counted from: silence while the database or the reconciler was down
   * says nothing about the workers, so the lease is counted from when both were last up.
   */
  since: Date;
  /** Workers known to have exited (their liveness lock is free): dead now, whatever their lease. */
  exited: string[];
}

/**
 * The moment a lease is counted from: the later of the last heartbeat, the last PostgreSQL start,
 * and the reconciler's own start. (SQL fragment; `column` is a heartbeat column.)
 */
function leaseStart(column: string, since: Date) {
  return sql`greatest(coalesce(${sql.ref(column)}, '-infinity'::timestamptz), pg_postmaster_start_time(), ${since}::timestamptz)`;
}

/**
 * Releases every graphile-worker lock held by worker processes that are dead: exited (their
 * liveness lock is free) or silent for longer than the lease (see DeathRule), and forgets them.
 * Their fetched-but-not-started jobs become available to other workers at once; jobs of attempts
 * they had started are settled by settleLostAttempts. If such a process is in fact alive, nothing
 * is run twice: every claim and outcome is a guarded update, and the worker aborts an attempt as
 * soon as its heartbeat shows the attempt is no longer its own.
 */
export async function releaseDeadWorkers(db: Kysely<Database>, rule: DeathRule): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`
    with dead as (
      delete from workers
      where id = any(${rule.exited}::text[])
        or ${leaseStart("heartbeat_at", rule.since)} < now() - make_interval(secs => ${rule.leaseMs / 1000})
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
 * Settles attempts whose worker is dead: it exited (`dead`, from releaseDeadWorkers) or the
 * attempt's heartbeat is older than the lease (counted as DeathRule says). The attempt counts, and
 * the task goes to CANCELLED (a cancel was pending), FAILED when its worker was lost on each of its
 * last max_attempts attempts (a poison task: it probably kills its worker, e.g. by exhausting
 * memory), or else RETRYING, re-enqueued at once, even past max_attempts: losing the worker is not
 * the task's failure (it may have shared the worker with the task that killed it). History names
 * the lost worker. The dead worker's graphile-worker lock on the job is released and the job
 * removed, so nothing stays locked for graphile-worker's 4-hour timeout.
 *
 * Safe against live workers and other reconcilers: candidates are locked with SKIP LOCKED and the
 * update is guarded on status; a slow worker that wakes up later finds its guarded outcome update
 * matching nothing, so one outcome is ever recorded.
 */
export async function settleLostAttempts(db: Kysely<Database>, rule: DeathRule & { dead: string[] }, limit: number): Promise<TaskRow[]> {
  return db.transaction().execute(async (trx) => {
    const { rows: lost } = await sql<{ id: string; job_id: string | null }>`
      select id, job_id from tasks
      where (status = 'running' or (status = 'paused' and worker_id is not null)) and (worker_id = any(${rule.dead}::text[])
        or ${leaseStart("heartbeat_at", rule.since)} < now() - make_interval(secs => ${rule.leaseMs / 1000}))
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
    const lease = `${Math.round(rule.leaseMs / 1000)}s`;
    // lost_attempts counts losses in a row: a task whose every attempt loses its worker is a poison
    // task (it likely kills the process) and fails after max_attempts losses; a single loss is not
    // the task's fault and is retried.
    const { rows } = await transition({
      with: [
        sql`lost as (
          select id as lost_id, worker_id as lost_worker, worker_id = any(${rule.dead}::text[]) as lost_exited
          from tasks where id = any(${ids}::bigint[]))`,
      ],
      change: {
        set: sql`status = (case
            when cancel_requested_at is not null then 'cancelled'
            when lost_attempts + 1 >= max_attempts then 'failed'
            -- Paused mid-attempt: the attempt is lost, the pause holds (resume retries it).
            when status = 'paused' then 'paused'
            else 'retrying' end)::task_status,
          paused_from = case when status = 'paused' and cancel_requested_at is null and lost_attempts + 1 < max_attempts then 'retrying'::task_status end,
          paused_at = case when status = 'paused' and cancel_requested_at is null and lost_attempts + 1 < max_attempts then paused_at end,
          lost_attempts = lost_attempts + 1,
          last_error = case
            when cancel_requested_at is not null then last_error
            when lost_attempts + 1 >= max_attempts and lost_attempts > 0
              then 'worker lost on each of ' || (lost_attempts + 1) || ' attempts; possibly out of memory'
            when lost_exited then 'worker lost: the worker process exited'
            else 'worker lost: no heartbeat for ' || ${lease} end,
          finished_at = case when cancel_requested_at is not null or lost_attempts + 1 >= max_attempts then now() end,
          run_at = now(), worker_id = null, heartbeat_at = null, job_id = null`,
        from: sql`lost`,
        where: sql`id = lost_id and (status = 'running' or (status = 'paused' and worker_id is not null))`,
      },
      details: sql`'attempt ' || attempts || ' lost: worker ' || coalesce(lost_worker, '?')
          || case when lost_exited then ' exited' else ' sent no heartbeat for ' || ${lease} end
          || case status
          when 'cancelled' then '; cancellation completed' || coalesce(': ' || cancel_reason, '')
          when 'retrying' then '; retrying now'
          when 'paused' then '; stays paused: resume to retry'
          else '; giving up: ' || last_error end`,
      enqueue: sql<boolean>`status = 'retrying'`,
    }).execute(trx);
    return rows;
  });
}

/**
 * Removes task jobs (run:<queue>:<type>) that are stale: their task no longer waits for the attempt they would
 * start, nor runs it, and they are either still locked after the lease or were fetched before and
 * released (attempts > 0: graphile-worker counts fetches). Both are what a worker leaves when
 * graphile-worker could not record a job's completion (PostgreSQL went away at that moment): the
 * job stays locked until its worker's locks are released, and if a transition enqueued the task's
 * next job meanwhile, graphile-worker marked the old one exhausted (attempts = max_attempts, no
 * key), so once released it would sit there forever. The task's own outcome was recorded, so the
 * job has nothing left to do. Only jobs locked for longer than the lease are touched, so a job
 * being claimed right now is never in the way; a job never fetched is a fresh enqueue and is left
 * to run. (A scan of graphile-worker's job table: the full pass runs it, and the every-second
 * rescue only after it released a dead worker's locks.)
 */
export async function removeStaleJobs(db: Kysely<Database>, leaseMs: number): Promise<number> {
  // graphile-worker's complete_jobs() skips locked jobs, so this deletes the way graphile-worker's
  // own completion does (sql/completeJobs.ts: a delete by id; run_task jobs have no queue). The
  // jobs view has no payload, hence the tables.
  const { rows } = await sql<{ n: string }>`
    with stale as (
      delete from graphile_worker._private_jobs j
      using graphile_worker._private_tasks gt
      where gt.id = j.task_id and starts_with(gt.identifier, ${RUN_TASK_PREFIX}::text) and j.job_queue_id is null
        and (j.locked_at < now() - make_interval(secs => ${leaseMs / 1000}) or (j.locked_at is null and j.attempts > 0))
        and j.payload->>'taskId' ~ '^[0-9]+$' and j.payload->>'attempt' ~ '^[0-9]+$'
        and not exists (
          select 1 from tasks t
          where t.id = (j.payload->>'taskId')::bigint and (
            (t.status in ('queued', 'retrying') and t.attempts = (j.payload->>'attempt')::int - 1)
            or (t.status in ('running', 'paused') and t.job_id = j.id)))
      returning j.id
    )
    select count(*) as n from stale
  `.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/**
 * Re-enqueues QUEUED/RETRYING tasks that have no runnable job (removed by hand, or exhausted by
 * graphile-worker's own retries while the database was unreachable). Tasks changed in the last few
 * seconds are left alone.
 */
export async function requeueOrphans(db: Kysely<Database>, limit: number): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`
    with orphans as (
      select t.id, t.queue, t.type, t.run_at, t.priority, t.attempts from tasks t
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
        where ${WAITING} and cancel_requested_at is not null
        limit ${limit}
        for update skip locked)`,
    ],
    change: {
      set: sql`status = 'cancelled', finished_at = now(), paused_from = null, paused_at = null`,
      from: sql`pending`,
      where: sql`id = pending_id and ${WAITING}`,
    },
    details: sql`'cancelled: the request arrived while the task was between attempts' || coalesce(': ' || cancel_reason, '')`,
    removeJob: true,
  }).execute(db);
  return rows.map((r) => r.id);
}

/**
 * Releases every job lock held under these graphile-worker ids: a worker process calls it for its
 * own ids once graphile-worker has stopped, when nothing of its can still be running. A job still
 * locked then lost its completion to a database outage; released, it either runs again (its
 * claim finds the task moved on, so it completes as a no-op) or, if exhausted, is removed by
 * removeStaleJobs, instead of staying locked for graphile-worker's four-hour timeout.
 */
export async function releaseJobLocks(db: Kysely<Database>, graphileIds: string[]): Promise<void> {
  if (graphileIds.length === 0) return;
  await sql`select graphile_worker.force_unlock_workers(${graphileIds}::text[])`.execute(db);
}
