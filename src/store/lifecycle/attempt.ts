import { sql, type Kysely, type RawBuilder } from "kysely";
import { queryPrepared, type Db } from "../db.js";
import type { Database, TaskRow } from "../schema.js";
import { FINISHED_LIST, IN_ATTEMPT, type AttemptOutcome } from "./states.js";
import { transition } from "./statement.js";

/**
 * The events of an attempt once it has started: heartbeat (no change of state), outcome (RUNNING
 * or PAUSED mid-attempt -> SUCCEEDED, RETRYING, FAILED, CANCELLED, or PAUSED held) and rescue of a
 * lost attempt (the same, for an attempt whose worker is gone). An outcome and a rescue end the
 * attempt through ONE statement shape (endAttempts): what the row's state makes of the ending is
 * decided there once. Claims are in claim.ts.
 */

/** A running attempt, as a heartbeat names it. */
export interface AttemptRef {
  taskId: string;
  attempt: number;
}

/** What a worker process serves and how busy it is, as its heartbeat records it (ListWorkers). */
export interface WorkerInfo {
  types: string[];
  queues: string[];
  slots: number;
  busy: number;
  host: string | null;
  pid: number | null;
  /** Its labels (sorted "key=value" pairs, migration 0032); absent: none. */
  labels?: string[];
}

/** What a heartbeat learned about one attempt that is still this worker's. */
export interface OwnedAttempt extends AttemptRef {
  cancelRequested: boolean;
  /** The attempt is PAUSED: its processes must be stopped (a fallback for missed notifications). */
  paused: boolean;
}

/**
 * Event `heartbeat` (RUNNING or PAUSED mid-attempt, owned by this worker; no change of state, no
 * history row), in one statement with the process's own heartbeat: it refreshes the process's row
 * in workers (with the graphile-worker ids its cron jobs are locked under) and the heartbeat of
 * every attempt it is running, and returns the attempts that are still its own, with whether a
 * cancellation was requested (a fallback for missed notifications). An attempt missing from the
 * answer is no longer this worker's (a reconciler settled it): the worker must stop it at once
 * (fencing).
 */
export async function heartbeat(
  db: Kysely<Database>,
  workerId: string,
  graphileIds: string[],
  attempts: AttemptRef[],
  info: WorkerInfo = { types: [], queues: [], slots: 0, busy: 0, host: null, pid: null },
): Promise<OwnedAttempt[]> {
  const { rows } = await sql<{ id: string; attempts: number; cancel_requested_at: Date | null; paused: boolean }>`
    with alive as (
      insert into workers (id, graphile_ids, types, queues, slots, busy, host, pid, labels)
      values (${workerId}, ${graphileIds}::text[], ${info.types}::text[], ${info.queues}::text[], ${info.slots}::int, ${info.busy}::int, ${info.host}::text, ${info.pid}::int,
        ${info.labels ?? []}::text[])
      on conflict (id) do update set graphile_ids = excluded.graphile_ids, heartbeat_at = now(),
        types = excluded.types, queues = excluded.queues, slots = excluded.slots, busy = excluded.busy, host = excluded.host, pid = excluded.pid,
        labels = excluded.labels
    )
,
    a as (select * from unnest(${attempts.map((a) => a.taskId)}::bigint[], ${attempts.map((a) => a.attempt)}::int[]) as a(id, attempt)),
    locked as (${lockInIdOrder(sql`id in (select id from a) and worker_id = ${workerId} and ${IN_ATTEMPT}`)})
    update tasks t set heartbeat_at = now()
    from a, locked
    where t.id = a.id and t.id = locked.locked_id and t.attempts = a.attempt and ${IN_ATTEMPT} and t.worker_id = ${workerId}
    returning t.id, t.attempts, t.cancel_requested_at, t.status = 'paused' as paused
  `.execute(db);
  return rows.map((r) => ({ taskId: String(r.id), attempt: r.attempts, cancelRequested: r.cancel_requested_at !== null, paused: r.paused }));
}

/**
 * A CTE body that locks the tasks rows matching `where` in id order (FOR UPDATE), as
 * `locked_id`. HAZARD: every statement that locks several running attempts' rows and may wait
 * (heartbeat, outcome, shortened leases) must take them through this, so all take them in ONE
 * order; an UPDATE ... FROM locks in its join's order, which follows its input, and two such
 * statements over the same rows in different orders deadlock (40P01, seen between an agent's
 * Heartbeat and ReportOutcomes). The UPDATE that follows joins it, so it finds its rows locked.
 */
function lockInIdOrder(where: RawBuilder<unknown>): RawBuilder<unknown> {
  return sql`select id as locked_id from tasks where ${where} order by id for update`;
}

/**
 * How attempts end, for outcomes and rescues alike: `e` is the `from` relation, one row per
 * attempt, with e_id (task), e_kind ('succeeded', 'retrying', 'failed', 'cancelled': the worker's
 * outcome after afterAttempt; 'lost': the worker is gone), e_result, e_error, e_retry_at and
 * e_details (the history line's start). `guard` selects the attempt (RUNNING or PAUSED
 * mid-attempt, this attempt, this owner or a dead one).
 *
 * What the row's state makes of the ending, decided here once, against the row as it is when the
 * statement locks it:
 * - a retry (or a lost attempt) of a task whose cancel was requested meanwhile is CANCELLED:
 *   the request wins rather than leave a RETRYING task with a pending cancel;
 * - a lost attempt of a task whose worker was lost on each of its last max_attempts attempts is
 *   FAILED (a poison task: it probably kills its worker, e.g. by exhausting memory); a single loss
 *   is not the task's fault and is retried at once, even past max_attempts;
 * - a retry (or a lost attempt) of an attempt that was paused stays PAUSED, held as if paused while
 *   RETRYING: the operator's pause outlives the attempt (resume retries it); other outcomes end it;
 * - otherwise the outcome's own kind (a lost attempt: RETRYING).
 */
function endAttempts(spec: { with?: RawBuilder<unknown>[]; from: RawBuilder<unknown>; guard: RawBuilder<unknown> }): RawBuilder<TaskRow> {
  const next = sql`(case
      when e.e_kind in ('retrying', 'lost') and cancel_requested_at is not null then 'cancelled'
      when e.e_kind = 'lost' and lost_attempts + 1 >= max_attempts then 'failed'
      when e.e_kind in ('retrying', 'lost') and status = 'paused' then 'paused'
      when e.e_kind = 'lost' then 'retrying'
      else e.e_kind end)::task_status`;
  const poisoned = sql`(e.e_kind = 'lost' and cancel_requested_at is null and lost_attempts + 1 >= max_attempts and lost_attempts > 0)`;
  return transition({
    with: spec.with,
    change: {
      set: sql`status = ${next},
        paused_from = case when ${next} = 'paused' then 'retrying'::task_status end,
        paused_at = case when ${next} = 'paused' then paused_at end,
        result = coalesce(e.e_result, result),
        last_error = case
          when e.e_kind = 'lost' and cancel_requested_at is not null then last_error
          when ${poisoned} then 'worker lost on each of ' || (lost_attempts + 1) || ' attempts; possibly out of memory'
          else coalesce(e.e_error, last_error) end,
        run_at = coalesce(e.e_retry_at, run_at),
        finished_at = case when ${next} in ${FINISHED_LIST} then now() end,
        worker_id = null, heartbeat_at = null,
        /* losses in a row (poison-task detection); a recorded outcome ends the run */
        lost_attempts = case when e.e_kind = 'lost' then lost_attempts + 1 else 0 end`,
      from: spec.from,
      where: spec.guard,
    },
    // Over the changed row: status, last_error and cancel_reason are the new values.
    details: sql`case
      when status = 'paused' then e.e_details || '; stays paused: resume to retry'
      when status = 'cancelled' and e.e_kind = 'retrying'
        then 'attempt ' || attempts || ' failed: ' || last_error || '; not retried: cancelled by request' || coalesce(': ' || cancel_reason, '')
      when status = 'cancelled' and e.e_kind = 'lost' then e.e_details || '; cancellation completed' || coalesce(': ' || cancel_reason, '')
      when status = 'cancelled' and cancel_reason is not null then e.e_details || ': ' || cancel_reason
      when e.e_kind = 'lost' and status = 'retrying' then e.e_details || '; retrying now'
      when e.e_kind = 'lost' then e.e_details || '; giving up: ' || last_error
      else e.e_details end`,
    enqueue: sql<boolean>`status = 'retrying'`,
  });
}

/** One attempt's outcome to record: which attempt, whose, and how it ended. */
export interface OutcomeRecord {
  taskId: string;
  attempt: number;
  workerId: string;
  outcome: AttemptOutcome;
}

/**
 * Event `outcome` of one attempt (see recordOutcomes). Returns undefined when someone else
 * already recorded an outcome for it (the reconciler after a lost heartbeat, say): then this
 * worker's result is discarded rather than recorded twice.
 */
export async function recordOutcome(db: Db, taskId: string, attempt: number, workerId: string, outcome: AttemptOutcome): Promise<TaskRow | undefined> {
  const [recorded] = await recordOutcomes(db, [{ taskId, attempt, workerId, outcome }]);
  return recorded;
}

/**
 * Event `outcome` (success, retryable or permanent failure, timeout, cancelled while running) for
 * many attempts in ONE statement (the worker's write-behind batches, src/worker/outcome-writer.ts):
 * each row passes its own guard (RUNNING or PAUSED mid-attempt, this attempt, this owner) and gets
 * its own history row and, for a retry, its next job (endAttempts). Returns, per record in input
 * order, the recorded row or undefined (someone else settled that attempt).
 */
export async function recordOutcomes(db: Db, records: OutcomeRecord[]): Promise<(TaskRow | undefined)[]> {
  if (records.length === 0) return [];
  const input = JSON.stringify(
    records.map(({ taskId, attempt, workerId, outcome }) => ({
      e_id: taskId,
      e_attempt: attempt,
      e_worker: workerId,
      e_kind: outcome.kind,
      e_result: outcome.kind === "succeeded" ? outcome.result : null,
      e_error: outcome.kind === "retrying" || outcome.kind === "failed" ? outcome.error : null,
      e_retry_at: outcome.kind === "retrying" ? outcome.retryAt.toISOString() : null,
      e_details: outcome.details,
    })),
  );
  const rows = await queryPrepared(db, "task_record_outcomes", endAttempts({
    with: [
      sql`e as (select * from jsonb_to_recordset(${input}::jsonb) as e(e_id bigint, e_attempt int, e_worker text, e_kind text,
        e_result jsonb, e_error text, e_retry_at timestamptz, e_details text))`,
      sql`locked as (${lockInIdOrder(sql`id in (select e_id from e) and ${IN_ATTEMPT}`)})`,
    ],
    from: sql`e join locked on locked.locked_id = e.e_id`,
    guard: sql`id = e.e_id and ${IN_ATTEMPT} and attempts = e.e_attempt and worker_id = e.e_worker`,
  }));
  const byAttempt = new Map(rows.map((row) => [`${row.id}:${row.attempts}`, row]));
  return records.map((r) => byAttempt.get(`${r.taskId}:${r.attempt}`));
}

/** Which attempts a rescue takes: those whose worker is dead (see store/reconcile.ts DeathRule). */
export interface LostAttempts {
  /** Condition over tasks: the attempt's worker is gone (exited, or its lease ran out). */
  lost: RawBuilder<boolean>;
  /** Workers known to have exited (the history says "exited" rather than "sent no heartbeat"). */
  exited: string[];
  /** The lease, as the history quotes it ("15s"). */
  lease: string;
  limit: number;
}

/**
 * Event `rescue` of lost attempts (RUNNING or PAUSED mid-attempt whose worker is gone): the
 * attempt counts, and the task goes where endAttempts sends a lost attempt (CANCELLED, FAILED as a
 * poison task, PAUSED held, or RETRYING, re-enqueued at once). History names the lost worker. One
 * statement: candidates are locked with SKIP LOCKED and the update is guarded on the attempt still
 * being in progress, so a slow worker that wakes up later finds its guarded outcome update
 * matching nothing, and one outcome is ever recorded.
 */
export async function rescueLostAttempts(db: Kysely<Database>, which: LostAttempts): Promise<TaskRow[]> {
  const { rows } = await rescueStatement(which).execute(db);
  return rows;
}

/** The statement of rescueLostAttempts (for its query plan: test/migrate-forward.test.ts). */
export function rescueStatement(which: LostAttempts): RawBuilder<TaskRow> {
  return endAttempts({
    with: [
      sql`e as (
        select id as e_id, 'lost'::text as e_kind, null::jsonb as e_result, now() as e_retry_at,
          case when worker_id = any(${which.exited}::text[]) then 'worker lost: the worker process exited'
            else 'worker lost: no heartbeat for ' || ${which.lease}::text end as e_error,
          'attempt ' || attempts || ' lost: worker ' || coalesce(worker_id, '?')
            || case when worker_id = any(${which.exited}::text[]) then ' exited' else ' sent no heartbeat for ' || ${which.lease}::text end as e_details
        from tasks
        where ${IN_ATTEMPT} and ${which.lost}
        order by heartbeat_at
        limit ${which.limit}
        for update skip locked)`,
    ],
    from: sql`e`,
    guard: sql`id = e.e_id and ${IN_ATTEMPT}`,
  });
}

/**
 * Event `heartbeat`'s counterpart when an agent's assignment stream ends (no change of state, no
 * history row): the worker's attempts that a heartbeat acknowledged (heartbeat_at past started_at)
 * lapse `graceMs` from now instead of a full lease later, unless a heartbeat renews them meanwhile
 * (which sets heartbeat_at to now again: the agent is alive). A lease already nearer is left alone.
 * Unacknowledged starts keep heartbeat_at = started_at, so the take-back still finds them.
 * Returns the attempts it shortened.
 */
export async function shortenLeases(db: Kysely<Database>, workerId: string, leaseMs: number, graceMs: number): Promise<AttemptRef[]> {
  const { rows } = await sql<{ id: string; attempts: number }>`
    with locked as (${lockInIdOrder(sql`worker_id = ${workerId} and ${IN_ATTEMPT}`)})
    update tasks set heartbeat_at = now() - make_interval(secs => ${(leaseMs - graceMs) / 1000})
    from locked
    where id = locked.locked_id and worker_id = ${workerId} and ${IN_ATTEMPT} and heartbeat_at <> started_at
      and heartbeat_at > now() - make_interval(secs => ${(leaseMs - graceMs) / 1000})
    returning id, attempts
  `.execute(db);
  return rows.map((r) => ({ taskId: String(r.id), attempt: r.attempts }));
}
