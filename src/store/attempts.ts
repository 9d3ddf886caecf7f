import { sql, type Kysely } from "kysely";
import { queryPrepared, type Db } from "./db.js";
import type { Database, TaskRow } from "./schema.js";
import { transition } from "./transitions.js";

/** What one claim statement of a worker process's fetch loop may take (claimNextAttempts). */
export interface NextAttempts {
  /** The graphile-worker task identifiers to take jobs of (src/worker/jobs.ts runTaskIdentifier). */
  identifiers: string[];
  /** Job flags not to take (queues held or limited, src/worker/queue-gate.ts). */
  forbiddenFlags: string[];
  /** Most attempts to start (the process's free slots). */
  limit: number;
  /**
   * A queue with a concurrency limit (or paused): take at most one of its jobs, admitted by the
   * queue's gate (task_queue_admits). Without it, only tasks of queues with neither are started.
   */
  limitedQueue?: string;
}

/**
 * A worker process's fetch and claim in ONE statement (its fetch loop, src/worker/claim-loop.ts):
 * takes the best available run_task jobs it serves (graphile-worker's order: priority, then due
 * time; FOR UPDATE SKIP LOCKED, so concurrent fetchers never take the same job), starts the
 * attempt each names (QUEUED/RETRYING -> RUNNING, with its history row) and deletes the job, which
 * is never locked, completed or failed: from the claim on, the task row owns the attempt
 * (heartbeat, lease, fencing and rescue work on it; a retry gets a new job). Each row is guarded:
 * waiting for exactly this attempt, no pending cancel, and its queue's gate.
 * A job whose task is not waiting for its attempt (stale, a duplicate, a cancelled or paused task)
 * is deleted unused, as graphile-worker would have completed it.
 *
 * The queue gate cannot hold for a batch: task_queue_admits counts a limited queue's RUNNING tasks
 * once per statement, which would let a batch overshoot the limit. So a batch refuses every task of
 * a queue that is paused or limited (in SQL, whatever the caller's view of the queues; the caller
 * forbids their flags so it does not take them at all), and such a queue is claimed one job per
 * statement with `limitedQueue`, where the gate locks the queue's row and counts. A refused job
 * stays where it was, unlocked when the statement commits.
 *
 * Priority holds without a re-check: the statement takes the best jobs the process may run at that
 * moment, and starts them at once (nothing waits in a local queue, where a job fetched earlier
 * would start before better ones that arrived after it).
 */
export async function claimNextAttempts(db: Db, workerId: string, next: NextAttempts): Promise<TaskRow[]> {
  if (next.limit <= 0) return [];
  const waitingFor = (t: string, p: string) =>
    sql`${sql.ref(t)}.status in ('queued', 'retrying') and ${sql.ref(t)}.attempts = ${sql.ref(p)}.c_attempt - 1 and ${sql.ref(t)}.cancel_requested_at is null`;
  const gate = next.limitedQueue === undefined
    ? sql`not exists (select 1 from queues q where q.name = tasks.queue and (q.paused or q.concurrency is not null))`
    : sql`tasks.queue = ${next.limitedQueue}::text and task_queue_admits(tasks.queue)`;
  return queryPrepared(db, next.limitedQueue === undefined ? "task_claim_next" : "task_claim_next_limited", transition({
    with: [
      // A payload we did not write (not a task id and an attempt number) names no task: dropped below.
      sql`picked as (
        select j.id as c_job,
          case when j.payload->>'taskId' ~ '^[0-9]{1,18}$' then (j.payload->>'taskId')::bigint end as c_id,
          case when json_typeof(j.payload->'attempt') = 'number' then (j.payload->>'attempt')::numeric end as c_attempt
        from graphile_worker._private_jobs j
        where j.is_available = true and j.run_at <= now()
          and j.task_id = any(array(select gt.id from graphile_worker._private_tasks gt where gt.identifier = any(${next.identifiers}::text[])))
          and (j.flags is null or not (j.flags ?| ${next.forbiddenFlags}::text[]))
        -- graphile-worker's order (its jobs_main_index): a tie-break on id would read a whole batch of equal rows.
        order by j.priority, j.run_at
        limit ${next.limitedQueue === undefined ? next.limit : 1}
        for update of j skip locked)`,
      // Every CTE reads the statement's snapshot: a task claimed below still looks waiting here, so
      // only jobs no claim could use are dropped (the claimed ones go with completeJob).
      sql`dropped as (
        delete from graphile_worker._private_jobs d using picked p
        where d.id = p.c_job and not exists (select 1 from tasks t where t.id = p.c_id and ${waitingFor("t", "p")}))`,
    ],
    change: {
      set: sql`status = 'running', attempts = attempts + 1, worker_id = ${workerId}, job_id = c.c_job, heartbeat_at = now(), started_at = now()`,
      // One job per task (duplicates of an attempt: the oldest wins; the rest are dropped as stale by the next fetch).
      from: sql`(select distinct on (c_id) * from picked where c_id is not null order by c_id, c_job) as c`,
      // The queue gate comes last: it may lock the queue's row, which only a claimable task should do.
      where: sql`tasks.id = c.c_id and ${waitingFor("tasks", "c")} and ${gate}`,
    },
    details: sql`'attempt ' || attempts || ' started on ' || ${workerId}`,
    completeJob: true,
  }));
}

/** How an attempt ended, as the store records it. */
export type AttemptOutcome =
  | { kind: "succeeded"; result: Record<string, unknown>; details: string }
  | { kind: "retrying"; error: string; details: string; retryAt: Date }
  | { kind: "failed"; error: string; details: string }
  | { kind: "cancelled"; details: string };

/** One attempt's outcome to record: which attempt, whose, and how it ended. */
export interface OutcomeRecord {
  taskId: string;
  attempt: number;
  workerId: string;
  outcome: AttemptOutcome;
}

/**
 * Records the outcome of a RUNNING (or PAUSED mid-attempt) attempt this worker owns: status, result or error, history row
 * and (for a retry) the next job, in one guarded statement. A retry of a task whose cancellation
 * was requested meanwhile is recorded as CANCELLED instead. Returns undefined when someone else
 * already recorded an outcome for it (the reconciler after a lost heartbeat, say): then this
 * worker's result is discarded rather than recorded twice.
 */
export async function recordOutcome(
  db: Db,
  taskId: string,
  attempt: number,
  workerId: string,
  outcome: AttemptOutcome,
): Promise<TaskRow | undefined> {
  const [recorded] = await recordOutcomes(db, [{ taskId, attempt, workerId, outcome }]);
  return recorded;
}

/**
 * recordOutcome for many attempts in ONE statement (the worker's write-behind batches, see
 * src/worker/outcome-writer.ts): each row still passes its own guard (RUNNING, this attempt, this
 * owner) and gets its own history row, through the same transition. Returns, per record in input
 * order, the recorded row or undefined (someone else settled that attempt).
 */
export async function recordOutcomes(db: Db, records: OutcomeRecord[]): Promise<(TaskRow | undefined)[]> {
  if (records.length === 0) return [];
  const input = JSON.stringify(
    records.map(({ taskId, attempt, workerId, outcome }) => ({
      o_id: taskId,
      o_attempt: attempt,
      o_worker: workerId,
      o_kind: outcome.kind,
      o_result: outcome.kind === "succeeded" ? outcome.result : null,
      o_error: outcome.kind === "retrying" || outcome.kind === "failed" ? outcome.error : null,
      o_retry_at: outcome.kind === "retrying" ? outcome.retryAt.toISOString() : null,
      o_details: outcome.details,
    })),
  );
  // A cancel requested while the attempt ran wins over a retry: the task is CANCELLED now rather
  // than RETRYING with a pending cancel that only the next reconcile pass would finish.
  const cancelsRetry = sql`o.o_kind = 'retrying' and cancel_requested_at is not null`;
  // A retry of an attempt that was paused meanwhile stays PAUSED (held, as if paused while
  // RETRYING): the operator's pause outlives the attempt. Other outcomes end the pause.
  const pausedRetry = sql`o.o_kind = 'retrying' and status = 'paused' and cancel_requested_at is null`;
  const rows = await queryPrepared(db, "task_record_outcomes", transition({
    change: {
      set: sql`status = (case when ${cancelsRetry} then 'cancelled' when ${pausedRetry} then 'paused' else o.o_kind end)::task_status,
        paused_from = case when ${pausedRetry} then 'retrying'::task_status end,
        paused_at = case when ${pausedRetry} then paused_at end,
        result = coalesce(o.o_result, result),
        last_error = coalesce(o.o_error, last_error),
        run_at = coalesce(o.o_retry_at, run_at),
        finished_at = case when o.o_kind <> 'retrying' or ${cancelsRetry} then now() else null end,
        worker_id = null, heartbeat_at = null,
        lost_attempts = 0 /* a recorded outcome ends a run of lost attempts (poison-task detection) */`,
      from: sql`jsonb_to_recordset(${input}::jsonb) as o(o_id bigint, o_attempt int, o_worker text, o_kind text,
        o_result jsonb, o_error text, o_retry_at timestamptz, o_details text)`,
      where: sql`id = o.o_id and status in ('running', 'paused') and attempts = o.o_attempt and worker_id = o.o_worker`,
    },
    details: sql`case
      when status = 'paused' then o.o_details || '; stays paused: resume to retry'
      when status = 'cancelled' and o.o_kind = 'retrying'
        then 'attempt ' || attempts || ' failed: ' || last_error || '; not retried: cancelled by request' || coalesce(': ' || cancel_reason, '')
      when status = 'cancelled' and cancel_reason is not null then o.o_details || ': ' || cancel_reason
      else o.o_details end`,
    enqueue: sql<boolean>`status = 'retrying'`,
  }));
  const byAttempt = new Map(rows.map((row) => [`${row.id}:${row.attempts}`, row]));
  return records.map((r) => byAttempt.get(`${r.taskId}:${r.attempt}`));
}

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
}

/** What a heartbeat learned about one attempt that is still this worker's. */
export interface OwnedAttempt extends AttemptRef {
  cancelRequested: boolean;
  /** The attempt is PAUSED: its processes must be stopped (a fallback for missed notifications). */
  paused: boolean;
}

/**
 * The worker process's heartbeat, in one statement: it refreshes the process's row in workers (with
 * the graphile-worker ids its jobs are locked under) and the heartbeat of every attempt it is
 * running, and returns the attempts that are still its own, with whether a cancellation was
 * requested (a fallback for missed notifications). An attempt missing from the answer is no
 * longer this worker's (a reconciler settled it): the worker must stop it at once (fencing).
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
      insert into workers (id, graphile_ids, types, queues, slots, busy, host, pid)
      values (${workerId}, ${graphileIds}::text[], ${info.types}::text[], ${info.queues}::text[], ${info.slots}::int, ${info.busy}::int, ${info.host}::text, ${info.pid}::int)
      on conflict (id) do update set graphile_ids = excluded.graphile_ids, heartbeat_at = now(),
        types = excluded.types, queues = excluded.queues, slots = excluded.slots, busy = excluded.busy, host = excluded.host, pid = excluded.pid
    )
    update tasks t set heartbeat_at = now()
    from unnest(${attempts.map((a) => a.taskId)}::bigint[], ${attempts.map((a) => a.attempt)}::int[]) as a(id, attempt)
    where t.id = a.id and t.attempts = a.attempt and t.status in ('running', 'paused') and t.worker_id = ${workerId}
    returning t.id, t.attempts, t.cancel_requested_at, t.status = 'paused' as paused
  `.execute(db);
  return rows.map((r) => ({ taskId: String(r.id), attempt: r.attempts, cancelRequested: r.cancel_requested_at !== null, paused: r.paused }));
}

/** Removes a worker process's row when it stops cleanly. */
export async function unregisterWorker(db: Kysely<Database>, workerId: string): Promise<void> {
  await db.deleteFrom("workers").where("id", "=", workerId).execute();
}
