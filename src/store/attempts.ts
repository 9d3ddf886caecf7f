import { sql, type Kysely } from "kysely";
import { queryPrepared, type Db } from "./db.js";
import type { Database, TaskRow } from "./schema.js";
import { transition } from "./transitions.js";

/**
 * Starts attempt `attempt` of a task: QUEUED/RETRYING -> RUNNING, attempts incremented, owner and
 * heartbeat set, history row written, in one guarded statement. Returns undefined when the task is
 * not waiting for exactly this attempt (a stale or duplicate job), or a cancel is pending.
 */
export async function claimAttempt(db: Db, taskId: string, attempt: number, workerId: string, jobId: string): Promise<TaskRow | undefined> {
  const rows = await queryPrepared(db, "task_claim_attempt", transition({
    change: {
      set: sql`status = 'running', attempts = attempts + 1, worker_id = ${workerId}, job_id = ${jobId}, heartbeat_at = now(), started_at = now()`,
      where: sql`id = ${taskId} and status in ('queued', 'retrying') and attempts = ${attempt - 1} and cancel_requested_at is null`,
    },
    details: sql`'attempt ' || attempts || ' started on ' || ${workerId}`,
  }));
  return rows[0];
}

/** How an attempt ended, as the store records it. */
export type AttemptOutcome =
  | { kind: "succeeded"; result: Record<string, unknown>; details: string }
  | { kind: "retrying"; error: string; details: string; retryAt: Date }
  | { kind: "failed"; error: string; details: string }
  | { kind: "cancelled"; details: string };

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
  const result = outcome.kind === "succeeded" ? JSON.stringify(outcome.result) : null;
  const error = outcome.kind === "retrying" || outcome.kind === "failed" ? outcome.error : null;
  const retryAt = outcome.kind === "retrying" ? outcome.retryAt : null;
  const finished = outcome.kind !== "retrying";
  // A cancel requested while the attempt ran wins over a retry: the task is CANCELLED now rather
  // than RETRYING with a pending cancel that only the next reconcile pass would finish.
  const cancelsRetry = sql`${outcome.kind}::text = 'retrying' and cancel_requested_at is not null`;
  // A retry of an attempt that was paused meanwhile stays PAUSED (held, as if paused while
  // RETRYING): the operator's pause outlives the attempt. Other outcomes end the pause.
  const pausedRetry = sql`${outcome.kind}::text = 'retrying' and status = 'paused' and cancel_requested_at is null`;
  const rows = await queryPrepared(db, "task_record_outcome", transition({
    change: {
      set: sql`status = (case when ${cancelsRetry} then 'cancelled' when ${pausedRetry} then 'paused' else ${outcome.kind}::text end)::task_status,
        paused_from = case when ${pausedRetry} then 'retrying'::task_status end,
        paused_at = case when ${pausedRetry} then paused_at end,
        result = coalesce(${result}::jsonb, result),
        last_error = coalesce(${error}, last_error),
        run_at = coalesce(${retryAt}::timestamptz, run_at),
        finished_at = case when ${finished} or ${cancelsRetry} then now() else null end,
        worker_id = null, heartbeat_at = null,
        lost_attempts = 0 /* a recorded outcome ends a run of lost attempts (poison-task detection) */`,
      where: sql`id = ${taskId} and status in ('running', 'paused') and attempts = ${attempt} and worker_id = ${workerId}`,
    },
    details: sql`case
      when status = 'paused' then ${outcome.details} || '; stays paused: resume to retry'
      when status = 'cancelled' and ${outcome.kind}::text = 'retrying'
        then 'attempt ' || attempts || ' failed: ' || last_error || '; not retried: cancelled by request' || coalesce(': ' || cancel_reason, '')
      when status = 'cancelled' and cancel_reason is not null then ${outcome.details} || ': ' || cancel_reason
      else ${outcome.details} end`,
    enqueue: sql<boolean>`status = 'retrying'`,
  }));
  return rows[0];
}

/** A running attempt, as a heartbeat names it. */
export interface AttemptRef {
  taskId: string;
  attempt: number;
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
export async function heartbeat(db: Kysely<Database>, workerId: string, graphileIds: string[], attempts: AttemptRef[]): Promise<OwnedAttempt[]> {
  const { rows } = await sql<{ id: string; attempts: number; cancel_requested_at: Date | null; paused: boolean }>`
    with alive as (
      insert into workers (id, graphile_ids) values (${workerId}, ${graphileIds}::text[])
      on conflict (id) do update set graphile_ids = excluded.graphile_ids, heartbeat_at = now()
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
