import { sql, type Kysely, type RawBuilder } from "kysely";
import { taskColumns, type Database, type TaskRow } from "./schema.js";
import { CANCEL_CHANNEL, WAKE_CHANNEL } from "./channels.js";
import { jobSpecsFrom, taskJobKey } from "./jobs.js";

/**
 * The one owner of task state transitions: every statement that changes a task's status is built
 * here, and each writes exactly one task_history row per task it changed, in the same statement (so
 * a transition and its history commit or roll back together, and two actors racing on the same
 * guard can never both record one).
 *
 * A transition is a guarded UPDATE of tasks (or, for creation, an INSERT), a history `details`
 * expression evaluated on each changed row, and optional side effects on the changed rows
 * (enqueue their next job, remove their pending job). The statement returns the changed rows.
 */

/** A status change of existing tasks: `update tasks set <set> [from <from>] where <where>`. */
export interface TaskUpdate {
  /** The SET list. Must set `status`; `updated_at = now()` is added here. */
  set: RawBuilder<unknown>;
  /** Extra relations for the update to join (`from` list); their columns must not clash with tasks'. */
  from?: RawBuilder<unknown>;
  /** The guard: which rows may make this transition (always includes the expected status). */
  where: RawBuilder<unknown>;
}

/** What a transition does besides the update and its history row. */
export interface TransitionSpec {
  /** CTEs the change can read, e.g. `locked as (select ... for update skip locked)`. */
  with?: RawBuilder<unknown>[];
  /** The change: an update of tasks, or an insert into tasks (creation) without a RETURNING list. */
  change: TaskUpdate | { insert: RawBuilder<unknown> };
  /** The history row's details: an expression over the changed row (new values) and the `from` list. */
  details: RawBuilder<unknown>;
  /** Enqueue a run_task job for each changed row (for which this condition over the row holds). */
  enqueue?: true | RawBuilder<boolean>;
  /** Remove each changed row's pending job. */
  removeJob?: boolean;
  /**
   * Delete each changed row's graphile-worker job (`job_id`, the job a claim took): the task row
   * owns the attempt from now on (heartbeat, lease, rescue), and the job is never completed.
   */
  completeJob?: boolean;
  /** pg_notify(channel, payload) for each changed row for which `when` holds (default: every row). */
  notify?: { channel: string; payload: RawBuilder<string>; when?: RawBuilder<boolean> };
}

const columns = sql.raw(taskColumns.join(", "));
const changedColumns = sql.raw(taskColumns.map((c) => `changed.${c}`).join(", "));

/**
 * Makes the final SELECT read CTEs that exist only for their side effect (add_jobs, remove_job,
 * pg_notify, force_unlock_workers). HAZARD: PostgreSQL always runs a data-modifying CTE, but a
 * SELECT-only CTE runs only if the main query reads it, so a side-effect CTE that nothing reads is
 * silently skipped. The cross join with one count per CTE always yields exactly one row, so it
 * forces evaluation without filtering the changed rows.
 */
export function forcing(...ctes: string[]): RawBuilder<unknown> {
  if (ctes.length === 0) return sql``;
  return sql.join(
    ctes.map((cte) => sql`cross join (select count(*) from ${sql.ref(cte)}) as ${sql.ref(`${cte}_forced`)}`),
    sql` `,
  );
}

/** Builds one transition statement (see the module comment); run it with execute or queryPrepared. */
export function transition(spec: TransitionSpec): RawBuilder<TaskRow> {
  const { change } = spec;
  const write =
    "insert" in change
      ? change.insert
      : // Each fragment ends on a new line, so a trailing `--` comment in one cannot swallow what follows.
        sql`update tasks set ${change.set}
          , updated_at = now() ${change.from ? sql`from ${change.from}` : sql``}
          where ${change.where}
        `;
  const ctes: RawBuilder<unknown>[] = [
    ...(spec.with ?? []),
    sql`changed as (${write}
      returning ${columns}, ${spec.details}
        as history_details)`,
    sql`history as (insert into task_history (task_id, status, attempt, details) select id, status, attempts, history_details from changed)`,
  ];
  const effects: string[] = [];
  if (spec.enqueue) {
    const condition = spec.enqueue === true ? sql`true` : spec.enqueue;
    ctes.push(sql`to_enqueue as (select * from changed where ${condition}
    )`);
    ctes.push(sql`enqueued as (select * from graphile_worker.add_jobs(${jobSpecsFrom("to_enqueue")}))`);
    // Jobs that are not due yet: tell workers when (epoch ms, comma-separated, earliest first) so
    // they fetch them on time instead of at their next poll. Nothing is sent for jobs due now.
    ctes.push(sql`woken as (
      select pg_notify(${WAKE_CHANNEL}, string_agg(at::text, ',' order by at)) from (
        select distinct ceil(extract(epoch from run_at) * 1000)::bigint as at from to_enqueue where run_at > now() order by at limit 200
      ) due having count(*) > 0)`);
    effects.push("enqueued", "woken");
  }
  if (spec.removeJob) {
    ctes.push(sql`removed as (select graphile_worker.remove_job(${taskJobKey("id")}) from changed)`);
    effects.push("removed");
  }
  if (spec.completeJob) {
    // Data-modifying, so it runs without being read.
    ctes.push(sql`completed as (delete from graphile_worker._private_jobs where id in (select job_id from changed))`);
  }
  if (spec.notify) {
    const { channel, payload, when } = spec.notify;
    ctes.push(sql`notified as (select pg_notify(${channel}, ${payload}) from changed where ${when ?? sql`true`}
    )`);
    effects.push("notified");
  }
  return sql<TaskRow>`with ${sql.join(ctes, sql`, `)} select ${changedColumns} from changed ${forcing(...effects)} order by changed.id`;
}

/**
 * A task that waits for its next attempt: QUEUED, RETRYING, or PAUSED while waiting (held: no
 * attempt of it is running). SQL condition over tasks.
 */
export const WAITING = sql<boolean>`(status in ('queued', 'retrying') or (status = 'paused' and worker_id is null))`;

/** A task with an attempt in progress: RUNNING, or PAUSED mid-attempt (its worker still owns it). */
export const IN_ATTEMPT = sql<boolean>`(status = 'running' or (status = 'paused' and worker_id is not null))`;

/**
 * Cancels a task that has not started (QUEUED, RETRYING or held PAUSED): status, history row and removal of its
 * pending job in one statement. Returns undefined when the task is not in one of those states.
 */
export async function cancelWaitingTask(db: Kysely<Database>, id: string, details: string, reason: string | null): Promise<TaskRow | undefined> {
  const { rows } = await transition({
    change: {
      set: sql`status = 'cancelled', finished_at = now(),
        cancel_requested_at = coalesce(cancel_requested_at, now()), cancel_reason = coalesce(${reason}, cancel_reason),
        paused_from = null, paused_at = null`,
      where: sql`id = ${id} and ${WAITING}`,
    },
    details: sql`${details}::text`,
    removeJob: true,
  }).execute(db);
  return rows[0];
}

/**
 * Asks the worker running a task to abort it: marks cancel_requested_at (and the reason, which the
 * CANCELLED history row will quote) and notifies workers. Not a transition: the worker records the
 * CANCELLED outcome (and the reconciler does if that worker is gone).
 * A task paused mid-attempt is included: its worker continues the processes so they can stop.
 * Returns undefined when the task is not RUNNING (or PAUSED mid-attempt).
 */
export async function requestCancelRunningTask(db: Kysely<Database>, id: string, reason: string | null): Promise<TaskRow | undefined> {
  const { rows } = await sql<TaskRow>`
    with updated as (
      update tasks set cancel_requested_at = coalesce(cancel_requested_at, now()), cancel_reason = coalesce(${reason}, cancel_reason), updated_at = now()
      where id = ${id} and ${IN_ATTEMPT}
      returning *
    ),
    notified as (select pg_notify(${CANCEL_CHANNEL}, id::text) from updated)
    select updated.* from updated ${forcing("notified")}
  `.execute(db);
  return rows[0];
}

/**
 * Puts a FAILED or CANCELLED task back in the queue with its attempts reset, writes the history row
 * and enqueues its job, in one statement. Everything an earlier run left (result, error, owner, the
 * job it ran under, a cancel request and its reason) is cleared, so a later cancel cannot quote a
 * stale reason. Returns undefined when the task is in another state.
 */
export async function requeueFinishedTask(db: Kysely<Database>, id: string, details: string): Promise<TaskRow | undefined> {
  const { rows } = await transition({
    change: {
      set: sql`status = 'queued', attempts = 0, lost_attempts = 0, last_error = null, result = null, worker_id = null, job_id = null,
        heartbeat_at = null, cancel_requested_at = null, cancel_reason = null, started_at = null, finished_at = null,
        run_at = now()`,
      where: sql`id = ${id} and status in ('failed', 'cancelled')`,
    },
    details: sql`${details}::text`,
    enqueue: true,
  }).execute(db);
  return rows[0];
}
