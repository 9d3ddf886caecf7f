import { sql, type Kysely, type RawBuilder } from "kysely";
import { queryPrepared, type Db } from "./db.js";
import type { Database, TaskRow } from "./schema.js";
import { jobSpecsFrom } from "./jobs.js";
import { forcing, transition, WAKE_CHANNEL } from "./transitions.js";

/**
 * What a worker process tells the claim about itself, so the claim can refuse a task when a better
 * one is waiting (priority that holds, see claimAttempt).
 */
export interface ClaimContext {
  /** The graphile-worker priority of the job being handled (lower runs first: -task priority, aged). */
  jobPriority: number;
  /** The graphile-worker task identifiers this process serves (src/queue/jobs.ts runTaskIdentifier). */
  identifiers: string[];
  /** The job flags this process does not fetch right now (held queues), see src/queue/queue-gate.ts. */
  forbiddenFlags: string[];
}

/**
 * Starts attempt `attempt` of a task: QUEUED/RETRYING -> RUNNING, attempts incremented, owner and
 * heartbeat set, history row written, in one guarded statement. Returns undefined when the task is
 * not waiting for exactly this attempt (a stale or duplicate job), a cancel is pending, or (see
 * below) it may not start now: claimRefusal tells the cases apart.
 *
 * Two extra guards, both in this one statement so they cost no round trip:
 * - The queue gate, task_queue_admits(queue) (migration 0012): not when the task's queue is
 *   paused, nor when it has a concurrency limit that its RUNNING tasks already reach. For a
 *   limited queue the function locks the queue's row, so claims racing for its last slot go one
 *   after the other, and each counts the RUNNING tasks after the previous one committed.
 * - Priority that holds (only with `context`): not when a job this process could fetch and run
 *   has a better priority than the one being handled. graphile-worker's local queue hands out the
 *   jobs it fetched earlier first, so without this a job fetched while all slots were busy would
 *   start before better ones that arrived after it. The subquery reads graphile-worker's main
 *   index (is_available, ordered by priority) and stops at its first row, so with equal
 *   priorities (the common case) it costs one index probe.
 */
export async function claimAttempt(
  db: Db,
  taskId: string,
  attempt: number,
  workerId: string,
  jobId: string,
  context?: ClaimContext,
): Promise<TaskRow | undefined> {
  const better = context ? betterJobWaiting(sql`${context.jobPriority}::int`, sql`${`task:${taskId}`}::text`, context) : sql``;
  const rows = await queryPrepared(db, context ? "task_claim_attempt_ordered" : "task_claim_attempt", transition({
    change: {
      set: sql`status = 'running', attempts = attempts + 1, worker_id = ${workerId}, job_id = ${jobId}, heartbeat_at = now(), started_at = now()`,
      // The queue gate comes last: it may lock the queue's row, which only a claimable task should do.
      where: sql`id = ${taskId} and status in ('queued', 'retrying') and attempts = ${attempt - 1} and cancel_requested_at is null
        ${better}
        and task_queue_admits(queue)`,
    },
    details: sql`'attempt ' || attempts || ' started on ' || ${workerId}`,
    completeJob: true,
  }));
  return rows[0];
}

/** One claim of a batch (claimAttempts): attempt `attempt` of a task, under graphile-worker job `jobId` of priority `jobPriority`. */
export interface ClaimRequest {
  taskId: string;
  attempt: number;
  jobId: string;
  jobPriority: number;
}

/**
 * claimAttempt for many jobs of one worker process in ONE statement (its concurrent claims,
 * coalesced by src/queue/claim-batcher.ts), for queues without a concurrency limit: each row passes
 * its own guards (waiting for exactly this attempt, no pending cancel, no better job waiting) and
 * gets its own history row. A queue that is paused or has a limit refuses the row here, whatever
 * the worker's view of it: task_queue_admits counts a limited queue's RUNNING tasks once per
 * statement, which would let a batch overshoot the limit, so those claims go one by one through
 * claimAttempt. Returns, per claim in input order, the claimed row or undefined. Two claims of the
 * same task (a duplicate job) cannot both win: the row is updated once and names the winning job.
 */
export async function claimAttempts(db: Db, workerId: string, claims: ClaimRequest[], context: Omit<ClaimContext, "jobPriority">): Promise<(TaskRow | undefined)[]> {
  if (claims.length === 0) return [];
  const input = JSON.stringify(claims.map((c) => ({ c_id: c.taskId, c_attempt: c.attempt, c_job: c.jobId, c_priority: c.jobPriority })));
  const rows = await queryPrepared(db, "task_claim_attempts", transition({
    change: {
      set: sql`status = 'running', attempts = attempts + 1, worker_id = ${workerId}, job_id = c.c_job, heartbeat_at = now(), started_at = now()`,
      from: sql`(select distinct on (c_id) * from jsonb_to_recordset(${input}::jsonb) as r(c_id bigint, c_attempt int, c_job bigint, c_priority int) order by c_id, c_job) as c`,
      where: sql`id = c.c_id and status in ('queued', 'retrying') and attempts = c.c_attempt - 1 and cancel_requested_at is null
        ${betterJobWaiting(sql`c.c_priority`, sql`'task:' || c.c_id`, context)}
        and not exists (select 1 from queues q where q.name = tasks.queue and (q.paused or q.concurrency is not null))`,
    },
    details: sql`'attempt ' || attempts || ' started on ' || ${workerId}`,
    completeJob: true,
  }));
  const byJob = new Map(rows.map((row) => [`${row.id}:${row.job_id}`, row]));
  return claims.map((c) => {
    const row = byJob.get(`${c.taskId}:${c.jobId}`);
    return row && row.attempts === c.attempt ? row : undefined;
  });
}

/**
 * The priority guard of a claim: a job this process could fetch and run has a better priority than
 * the one being handled (`priority`; `key` is its task's job key, so its own job does not count).
 */
function betterJobWaiting(priority: RawBuilder<unknown>, key: RawBuilder<unknown>, context: Omit<ClaimContext, "jobPriority">): RawBuilder<unknown> {
  return sql`
    and not exists (
      select 1 from graphile_worker._private_jobs j
      where j.is_available = true and j.run_at <= now() and j.priority < ${priority}
        and j.task_id in (select gt.id from graphile_worker._private_tasks gt where gt.identifier = any(${context.identifiers}::text[]))
        and (j.flags is null or not (j.flags ?| ${context.forbiddenFlags}::text[]))
        and j.key is distinct from ${key})
    `;
}

/** Why a claim that changed nothing did not: the job is stale, or its task waits (queue held, or a better task first). */
export type ClaimRefusal = { kind: "stale" } | { kind: "held"; queue: string } | { kind: "yielded"; queue: string };

/**
 * After claimAttempt returned nothing: is the task still waiting for this attempt (then its job
 * must be kept, see deferJob), and if so, was it held by its queue or did it yield to a better task?
 */
export async function claimRefusal(db: Kysely<Database>, taskId: string, attempt: number): Promise<ClaimRefusal> {
  const { rows } = await sql<{ queue: string; held: boolean }>`
    select t.queue, coalesce(q.paused or (q.concurrency is not null
        and (select count(*) from tasks r where r.queue = t.queue and r.status = 'running') >= q.concurrency), false) as held
    from tasks t left join queues q on q.name = t.queue
    where t.id = ${taskId} and t.status in ('queued', 'retrying') and t.attempts = ${attempt - 1} and t.cancel_requested_at is null
  `.execute(db);
  const row = rows[0];
  if (!row) return { kind: "stale" };
  return row.held ? { kind: "held", queue: row.queue } : { kind: "yielded", queue: row.queue };
}

/**
 * Gives a task that could not start now a new job for the same attempt, due in `delayMs`, so it is
 * neither lost nor retried at once in a hot loop: the job being handled is locked, so add_jobs
 * clears its key and writes a fresh one (graphile-worker completes the old one when the handler
 * returns). A delayed job is announced on the wake channel like any other.
 */
export async function deferJob(db: Kysely<Database>, taskId: string, delayMs: number): Promise<void> {
  await sql`
    with deferred as (
      select id, queue, type, attempts, priority, now() + make_interval(secs => ${delayMs / 1000}) as run_at
      from tasks where id = ${taskId} and status in ('queued', 'retrying')),
    enqueued as (select * from graphile_worker.add_jobs(${jobSpecsFrom("deferred")})),
    woken as (select pg_notify(${WAKE_CHANNEL}, ceil(extract(epoch from run_at) * 1000)::bigint::text) from deferred where ${delayMs}::int > 0)
    select 1 from deferred ${forcing("enqueued", "woken")}
  `.execute(db);
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
