import { sql, type Kysely } from "kysely";
import { queryPrepared, type Db } from "./db.js";
import type { Database, TaskRow } from "./schema.js";
import { transition } from "./transitions.js";

/** One claim: start attempt `attempt` of a task for this worker, under graphile-worker job `jobId`. */
export interface ClaimRequest {
  taskId: string;
  attempt: number;
  workerId: string;
  jobId: string;
}

/**
 * Starts attempt `attempt` of a task: QUEUED/RETRYING -> RUNNING, attempts incremented, owner and
 * heartbeat set, history row written, in one guarded statement. Returns undefined when the task is
 * not waiting for exactly this attempt (a stale or duplicate job), or a cancel is pending.
 */
export async function claimAttempt(db: Db, taskId: string, attempt: number, workerId: string, jobId: string): Promise<TaskRow | undefined> {
  const [claimed] = await claimAttempts(db, [{ taskId, attempt, workerId, jobId }]);
  return claimed;
}

/**
 * claimAttempt for many jobs in ONE statement (a worker's concurrent claims, coalesced by
 * src/queue/runner.ts): each row passes its own guard and gets its own history row. Returns, per
 * claim in input order, the claimed row or undefined. Two claims of the same task (a duplicate
 * job) cannot both win: the row is updated once, and it names the job that won (job_id).
 */
export async function claimAttempts(db: Db, claims: ClaimRequest[]): Promise<(TaskRow | undefined)[]> {
  if (claims.length === 0) return [];
  const input = JSON.stringify(claims.map((c) => ({ c_id: c.taskId, c_attempt: c.attempt, c_worker: c.workerId, c_job: c.jobId })));
  const rows = await queryPrepared(db, "task_claim_attempts", transition({
    change: {
      set: sql`status = 'running', attempts = attempts + 1, worker_id = c.c_worker, job_id = c.c_job, heartbeat_at = now(), started_at = now()`,
      from: sql`jsonb_to_recordset(${input}::jsonb) as c(c_id bigint, c_attempt int, c_worker text, c_job bigint)`,
      where: sql`id = c.c_id and status in ('queued', 'retrying') and attempts = c.c_attempt - 1 and cancel_requested_at is null`,
    },
    details: sql`'attempt ' || attempts || ' started on ' || c.c_worker`,
  }));
  const byJob = new Map(rows.map((row) => [`${row.id}:${row.job_id}`, row]));
  return claims.map((c) => {
    const row = byJob.get(`${c.taskId}:${c.jobId}`);
    return row && row.worker_id === c.workerId && row.attempts === c.attempt ? row : undefined;
  });
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
 * Records the outcome of a RUNNING attempt this worker owns: status, result or error, history row
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
 * src/queue/outcome-writer.ts): each row still passes its own guard (RUNNING, this attempt, this
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
  const rows = await queryPrepared(db, "task_record_outcomes", transition({
    change: {
      set: sql`status = (case when ${cancelsRetry} then 'cancelled' else o.o_kind end)::task_status,
        result = coalesce(o.o_result, result),
        last_error = coalesce(o.o_error, last_error),
        run_at = coalesce(o.o_retry_at, run_at),
        finished_at = case when o.o_kind <> 'retrying' or ${cancelsRetry} then now() else null end,
        worker_id = null, heartbeat_at = null,
        lost_attempts = 0 /* a recorded outcome ends a run of lost attempts (poison-task detection) */`,
      from: sql`jsonb_to_recordset(${input}::jsonb) as o(o_id bigint, o_attempt int, o_worker text, o_kind text,
        o_result jsonb, o_error text, o_retry_at timestamptz, o_details text)`,
      where: sql`id = o.o_id and status = 'running' and attempts = o.o_attempt and worker_id = o.o_worker`,
    },
    details: sql`case
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

/** What a heartbeat learned about one attempt that is still this worker's. */
export interface OwnedAttempt extends AttemptRef {
  cancelRequested: boolean;
}

/**
 * The worker process's heartbeat, in one statement: it refreshes the process's row in workers (with
 * the graphile-worker ids its jobs are locked under) and the heartbeat of every attempt it is
 * running, and returns the attempts that are still its own, with whether a cancellation was
 * requested (a fallback for missed notifications). An attempt missing from the answer is no
 * longer this worker's (a reconciler settled it): the worker must stop it at once (fencing).
 */
export async function heartbeat(db: Kysely<Database>, workerId: string, graphileIds: string[], attempts: AttemptRef[]): Promise<OwnedAttempt[]> {
  const { rows } = await sql<{ id: string; attempts: number; cancel_requested_at: Date | null }>`
    with alive as (
      insert into workers (id, graphile_ids) values (${workerId}, ${graphileIds}::text[])
      on conflict (id) do update set graphile_ids = excluded.graphile_ids, heartbeat_at = now()
    )
    update tasks t set heartbeat_at = now()
    from unnest(${attempts.map((a) => a.taskId)}::bigint[], ${attempts.map((a) => a.attempt)}::int[]) as a(id, attempt)
    where t.id = a.id and t.attempts = a.attempt and t.status = 'running' and t.worker_id = ${workerId}
    returning t.id, t.attempts, t.cancel_requested_at
  `.execute(db);
  return rows.map((r) => ({ taskId: String(r.id), attempt: r.attempts, cancelRequested: r.cancel_requested_at !== null }));
}

/** Removes a worker process's row when it stops cleanly. */
export async function unregisterWorker(db: Kysely<Database>, workerId: string): Promise<void> {
  await db.deleteFrom("workers").where("id", "=", workerId).execute();
}
