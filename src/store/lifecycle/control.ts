import { sql, type Kysely } from "kysely";
import { hasRunnableJob } from "../jobs.js";
import type { Database, TaskRow } from "../schema.js";
import { FINISHED, FINISHED_LIST, IN_ATTEMPT, STARTABLE, UNFINISHED, WAITING, type FinishedStatus } from "./states.js";
import { CANCEL_CHANNEL, PAUSE_CHANNEL } from "../channels.js";
import { retryOnConflict } from "../db.js";
import { mark, transition } from "./statement.js";

/**
 * The events an operator (API, bulk, schedules) or the reconciler asks for: cancel, pause,
 * resume, retry, finish a pending cancel, requeue an orphan, delete. Each takes ids and applies
 * its guard itself: a task in another state is left exactly as it was. The operator's events
 * (cancel, pause, resume, retry, delete) are repeated when PostgreSQL aborts them to break a
 * deadlock (retryOnConflict): a worker's claim locks a job, then its task; these lock a task, then
 * remove its job, so the two can meet in opposite order. A repeat changes only what the aborted try
 * did not (the guards), and an aborted statement changed nothing.
 */

/**
 * retryOnConflict, except inside the caller's transaction (an audited change, store/audit.ts):
 * there the aborted statement has aborted the whole transaction, so repeating the statement would
 * only fail again; its owner repeats the transaction instead (audited, bulk.ts).
 */
function repeatOnConflict<T>(db: Kysely<Database>, step: () => Promise<T>): Promise<T> {
  return db.isTransaction ? step() : retryOnConflict(step);
}

/** Guards, as SQL conditions over tasks: the states each event applies to (bulk actions count and select by these). */
export const GUARDS = {
  /** Cancel: not finished, and no cancel pending yet (a repeated single cancel of a running task is accepted again). */
  cancel: sql<boolean>`(${UNFINISHED} and cancel_requested_at is null)`,
  /** Pause: waiting (QUEUED, RETRYING) or RUNNING, no cancel pending; a running one only if its plugin can pause (pauseTasks). */
  pause: sql<boolean>`(status in ('queued', 'retrying', 'running') and cancel_requested_at is null)`,
  resume: sql<boolean>`(status = 'paused')`,
  retry: sql<boolean>`(status in ('failed', 'cancelled', 'expired'))`,
  /** Expire: never started (QUEUED, or PAUSED while waiting, with no attempt yet), no cancel pending, past its deadline. */
  expire: sql<boolean>`(status in ('queued', 'paused') and attempts = 0 and worker_id is null and cancel_requested_at is null
    and expires_at is not null and expires_at <= now())`,
  delete: FINISHED,
} as const;

/** Why a cancel happened: the history line (the request's reason, if any, is appended) and the reason. */
export interface CancelRequest {
  /** The history row's start, e.g. "cancelled by request". */
  details: string;
  /** Recorded on the task and quoted by every history row that ends it; null: none given. */
  reason: string | null;
}

/**
 * Event `cancel` (one task, bulk, a schedule's overlap: the one implementation): every unfinished
 * task among `ids` gets a cancel request (which stops a claim, turns a later retry into CANCELLED,
 * and is announced to the workers running them: they abort the attempt and record CANCELLED), then
 * the waiting ones (QUEUED, RETRYING, PAUSED held) become CANCELLED, with their history row and
 * their pending job removed. Safe in either order of events: a task that starts between the two
 * statements is covered by its request, one that goes back to waiting is finished by the
 * reconciler (finishPendingCancels). Finished tasks are left alone. Returns the rows it changed as
 * they are now (requested or CANCELLED), in id order.
 */
export async function cancelTasks(db: Kysely<Database>, ids: string[], request: CancelRequest): Promise<TaskRow[]> {
  return repeatOnConflict(db, async () => {
    if (ids.length === 0) return [];
    const { rows: requested } = await mark({
      set: sql`cancel_requested_at = coalesce(cancel_requested_at, now()), cancel_reason = coalesce(${request.reason}::text, cancel_reason)`,
      where: sql`id = any(${ids}::bigint[]) and ${UNFINISHED}`,
      notify: { channel: CANCEL_CHANNEL, payload: sql<string>`id::text`, when: IN_ATTEMPT },
    }).execute(db);
    if (requested.length === 0) return [];
    const { rows: cancelled } = await transition({
      change: {
        set: sql`status = 'cancelled', finished_at = now(), paused_from = null, paused_at = null`,
        where: sql`id = any(${requested.map((r) => r.id)}::bigint[]) and ${WAITING} and cancel_requested_at is not null`,
      },
      details: sql`${request.details}::text || coalesce(': ' || cancel_reason, '')`,
      removeJob: true,
    }).execute(db);
    const byId = new Map(requested.map((r) => [r.id, r]));
    for (const row of cancelled) byId.set(row.id, row);
    return [...byId.values()];
  });
}

/**
 * Event `cancel`, finished by the reconciler: waiting tasks (QUEUED, RETRYING, PAUSED held) whose
 * cancel was requested but not finished (the task went back to waiting, or its worker died, before
 * it saw the request) become CANCELLED.
 */
export async function finishPendingCancels(db: Kysely<Database>, limit: number): Promise<TaskRow[]> {
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
  return rows;
}

/**
 * Event `pause` (see docs/ARCHITECTURE.md "Pause and resume"). A PAUSED task is one of two kinds:
 * - held: it was QUEUED or RETRYING. Its pending job is removed, so nothing spins on it and no
 *   attempt starts; resume puts it back in paused_from and enqueues its job again.
 * - stopped mid-attempt: it was RUNNING and its type's plugin can pause (`pausableTypes`). The
 *   worker keeps owning the attempt (worker_id, attempts, heartbeats) and stops the attempt's
 *   processes; resume sets it RUNNING again and the worker continues them. Workers learn of both at
 *   once through PAUSE_CHANNEL, and from every heartbeat (a missed notification).
 * A task whose cancellation is pending is not paused: it is stopping. Returns the rows it paused.
 */
export async function pauseTasks(db: Kysely<Database>, ids: string[], pausableTypes: string[], details: string): Promise<TaskRow[]> {
  return repeatOnConflict(db, async () => {
    if (ids.length === 0) return [];
    const { rows: held } = await transition({
      change: {
        set: sql`status = 'paused', paused_from = status, paused_at = now()`,
        where: sql`id = any(${ids}::bigint[]) and ${STARTABLE}`,
      },
      details: sql`${details}::text`,
      removeJob: true,
    }).execute(db);
    if (pausableTypes.length === 0) return held;
    const { rows: stopped } = await transition({
      change: {
        set: sql`status = 'paused', paused_from = 'running', paused_at = now()`,
        where: sql`id = any(${ids}::bigint[]) and status = 'running' and cancel_requested_at is null and type = any(${pausableTypes}::text[])`,
      },
      details: sql`${details} || ' during attempt ' || attempts || ' on ' || coalesce(worker_id, '?')`,
      notify: { channel: PAUSE_CHANNEL, payload: sql<string>`id::text || ':paused'` },
    }).execute(db);
    return [...held, ...stopped].sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
  });
}

/**
 * Event `resume`: PAUSED tasks among `ids` go back where they were: a held one to QUEUED or
 * RETRYING with its job enqueued again (due at its run_at: a retry's backoff still counts), a
 * stopped one to RUNNING, and its worker is told to continue it. Returns the rows it resumed.
 */
export async function resumeTasks(db: Kysely<Database>, ids: string[], details: string): Promise<TaskRow[]> {
  return repeatOnConflict(db, async () => {
    if (ids.length === 0) return [];
    const { rows } = await transition({
      change: {
        // A stopped attempt whose worker was lost meanwhile was detached by the rescue (worker_id
        // null, paused_from retrying), so worker_id decides, not paused_from alone.
        set: sql`status = (case when worker_id is not null then 'running' else coalesce(paused_from, 'queued') end)::task_status,
          paused_from = null, paused_at = null`,
        where: sql`id = any(${ids}::bigint[]) and ${GUARDS.resume}`,
      },
      details: sql`${details}::text || case when status = 'running' then ' (attempt ' || attempts || ' continues)' else '' end`,
      enqueue: sql<boolean>`status in ('queued', 'retrying')`,
      notify: { channel: PAUSE_CHANNEL, payload: sql<string>`id::text || ':running'`, when: sql<boolean>`status = 'running'` },
    }).execute(db);
    return rows;
  });
}

/**
 * Event `retry`: FAILED, CANCELLED or EXPIRED tasks among `ids` (of `types`, when given: those this
 * server runs) go back to QUEUED with their attempts reset, their job enqueued, and a new deadline
 * if they have an expiry (now + expire_after). Everything an earlier run left (result, error, owner,
 * a cancel request and its reason) is cleared, so a later cancel cannot quote a stale reason.
 * `details`: the history line. Returns the rows it re-queued.
 */
export async function retryTasks(db: Kysely<Database>, ids: string[], details: string, types?: string[]): Promise<TaskRow[]> {
  return repeatOnConflict(db, async () => {
    if (ids.length === 0 || types?.length === 0) return [];
    const { rows } = await transition({
      change: {
        set: sql`status = 'queued', attempts = 0, lost_attempts = 0, last_error = null, result = null, worker_id = null,
          heartbeat_at = null, cancel_requested_at = null, cancel_reason = null, started_at = null, finished_at = null,
          run_at = now(), expires_at = now() + expire_after_ms * interval '1 millisecond'`,
        where: sql`id = any(${ids}::bigint[]) and ${GUARDS.retry}${types ? sql` and type = any(${types}::text[])` : sql``}`,
      },
      details: sql`${details}::text`,
      enqueue: true,
    }).execute(db);
    return rows;
  });
}

/**
 * Event `requeue` of orphans: QUEUED/RETRYING tasks (no cancel pending) that have no runnable job
 * (removed by hand, or exhausted by graphile-worker's own retries while the database was
 * unreachable) get their job again, with the due-time wake, and a history row saying so; their
 * status stays. Tasks changed in the last few seconds are left alone (a transition in flight).
 */
export async function requeueOrphans(db: Kysely<Database>, limit: number): Promise<TaskRow[]> {
  const { rows } = await transition({
    with: [
      sql`orphans as (
        select t.id as orphan_id from tasks t
        where t.status in ('queued', 'retrying') and t.cancel_requested_at is null
          and t.updated_at < now() - interval '5 seconds'
          and (t.expires_at is null or t.expires_at > now()) -- the expiry part ends it instead
          and not ${hasRunnableJob("t.id")}
        order by t.id
        limit ${limit}
        for update of t skip locked)`,
    ],
    change: {
      // The status stays; the history row and updated_at record the re-enqueue.
      set: sql`run_at = run_at`,
      from: sql`orphans`,
      where: sql`id = orphan_id and ${STARTABLE}`,
    },
    details: sql`'re-enqueued: its job was missing'::text`,
    enqueue: true,
  }).execute(db);
  return rows;
}

/**
 * Event `delete`: finished tasks among `ids` are deleted with their history and output (foreign
 * keys cascade); the task_counts delete trigger keeps the counts exact. Returns how many.
 */
export async function deleteTasks(db: Kysely<Database>, ids: string[]): Promise<number> {
  return repeatOnConflict(db, async () => {
    if (ids.length === 0) return 0;
    const { rows } = await sql<{ n: string }>`
      with deleted as (delete from tasks where id = any(${ids}::bigint[]) and ${GUARDS.delete} returning 1)
      select count(*) as n from deleted
    `.execute(db);
    return Number(rows[0]?.n ?? 0);
  });
}

/**
 * Event `expire` (-> EXPIRED): up to `limit` tasks that were never started and are past their
 * deadline (GUARDS.expire), earliest deadline first, each with a history row saying how long it
 * waited; their pending jobs are removed. A claim never starts such a task (claim.ts), so of the
 * two racing, one wins. Rows another transaction holds are skipped (the next pass takes them).
 */
export async function expireOverdue(db: Kysely<Database>, limit: number): Promise<TaskRow[]> {
  const { rows } = await transition({
    with: [
      sql`overdue as (
        select t.id as overdue_id from tasks t
        where ${GUARDS.expire}
        order by t.expires_at
        limit ${limit}
        for update of t skip locked)`,
    ],
    change: {
      set: sql`status = 'expired', finished_at = now(), paused_from = null, paused_at = null,
        last_error = 'not started within ' || (expire_after_ms / 1000.0)::numeric(12, 1)::text || ' s of when it was due'`,
      from: sql`overdue`,
      where: sql`id = overdue_id and ${GUARDS.expire}`,
    },
    details: sql`'expired: not started by its deadline ' || to_char(expires_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
      || ' (expire after ' || (expire_after_ms / 1000.0)::numeric(12, 1)::text || ' s)'`,
    removeJob: true,
  }).execute(db);
  return rows;
}

/**
 * How long until the earliest deadline of a task that may still expire (GUARDS.expire without the
 * time), in milliseconds on the database's clock (0 if already past), or null if none has one.
 * (Not greatest(0, …) in SQL: greatest ignores a null, so "no deadline" would read as "due now", and
 * every process's expiry part would ask again every few milliseconds.)
 */
export async function msToNextExpiry(db: Kysely<Database>): Promise<number | null> {
  const { rows } = await sql<{ ms: number | null }>`
    select (extract(epoch from min(expires_at) - now()) * 1000)::float8 as ms from tasks
    where expires_at is not null and attempts = 0 and status in ('queued', 'paused') and worker_id is null and cancel_requested_at is null`.execute(db);
  const ms = rows[0]?.ms ?? null;
  return ms === null ? null : Math.max(0, ms);
}

/**
 * Event `delete` by retention: up to `limit` tasks finished with `status` before `now - ageMs`,
 * oldest first. One short statement: its rows are locked only while it runs, and rows another
 * transaction holds are skipped, not waited for. Returns how many it deleted.
 */
export async function deleteExpired(db: Kysely<Database>, status: FinishedStatus, ageMs: number, limit: number): Promise<number> {
  const { rows } = await sql<{ n: string }>`
    with doomed as (
      select id from tasks
      where status = ${status}::task_status and status in ${FINISHED_LIST}
        and finished_at < now() - make_interval(secs => ${ageMs / 1000})
      order by finished_at
      limit ${limit}
      for update skip locked
    ),
    deleted as (
      delete from tasks t using doomed where t.id = doomed.id and t.status = ${status}::task_status returning 1
    )
    select count(*) as n from deleted
  `.execute(db);
  return Number(rows[0]?.n ?? 0);
}
