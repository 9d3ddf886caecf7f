import { sql, type RawBuilder } from "kysely";
import { addJobsOf, deleteTakenJobs, removeJobsOf } from "../jobs.js";
import { WAKE_CHANNEL } from "../channels.js";
import { taskColumns, type TaskRow } from "../schema.js";

/**
 * The shape of every lifecycle statement: a guarded UPDATE of tasks (or, for creation, an
 * INSERT), exactly one task_history row per task it changed, and the side effects on the changed
 * rows (enqueue their next job, remove their pending job, notify workers), all in ONE statement,
 * so a transition and its history commit or roll back together, and two actors racing on the same
 * guard can never both record one. The statement returns the changed rows.
 *
 * Only lifecycle/*.ts builds these: callers ask for an event (index.ts lists them).
 */

/** A status change of existing tasks: `update tasks set <set> [from <from>] where <where>`. */
export interface TaskUpdate {
  /** The SET list. `updated_at = now()` is added here. */
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
   * Delete the graphile-worker job each changed row was claimed from: `expression` (over the `from`
   * list) is the job's id. The task row owns the attempt from then on (heartbeat, lease, rescue).
   */
  takeJob?: RawBuilder<unknown>;
  /** pg_notify(channel, payload) for each changed row for which `when` holds (default: every row). */
  notify?: { channel: string; payload: RawBuilder<string>; when?: RawBuilder<boolean> };
}

const columns = sql.raw(taskColumns.join(", "));
const changedColumns = sql.raw(taskColumns.map((c) => `changed.${c}`).join(", "));

/**
 * Makes the final SELECT read CTEs that exist only for their side effect (add_jobs, remove_job,
 * pg_notify). HAZARD: PostgreSQL always runs a data-modifying CTE, but a SELECT-only CTE runs only
 * if the main query reads it, so a side-effect CTE that nothing reads is silently skipped. The
 * cross join with one count per CTE always yields exactly one row, so it forces evaluation without
 * filtering the changed rows.
 */
export function forcing(...ctes: string[]): RawBuilder<unknown> {
  if (ctes.length === 0) return sql``;
  return sql.join(
    ctes.map((cte) => sql`cross join (select count(*) from ${sql.ref(cte)}) as ${sql.ref(`${cte}_forced`)}`),
    sql` `,
  );
}

/**
 * The wake-ups of enqueued jobs, as CTEs over `source` (rows with id, queue, type, run_at,
 * priority, attempts): add each row's job, and tell workers when the jobs that are not due yet
 * come due (epoch ms, comma-separated, earliest first) so they fetch them on time instead of at
 * their next poll; nothing is sent for jobs due now. Returns the CTEs and their names (to force).
 */
function enqueueing(source: string): { ctes: RawBuilder<unknown>[]; names: string[] } {
  return {
    ctes: [
      sql`enqueued as (${addJobsOf(source)})`,
      sql`woken as (
      select pg_notify(${WAKE_CHANNEL}, string_agg(at::text, ',' order by at)) from (
        select distinct ceil(extract(epoch from run_at) * 1000)::bigint as at from ${sql.ref(source)} where run_at > now() order by at limit 200
      ) due having count(*) > 0)`,
    ],
    names: ["enqueued", "woken"],
  };
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
        as history_details${spec.takeJob ? sql`, ${spec.takeJob}
        as taken_job` : sql``})`,
    sql`history as (insert into task_history (task_id, status, attempt, details) select id, status, attempts, history_details from changed)`,
  ];
  const effects: string[] = [];
  if (spec.enqueue) {
    const condition = spec.enqueue === true ? sql`true` : spec.enqueue;
    ctes.push(sql`to_enqueue as (select * from changed where ${condition}
    )`);
    const { ctes: wake, names } = enqueueing("to_enqueue");
    ctes.push(...wake);
    effects.push(...names);
  }
  if (spec.removeJob) {
    ctes.push(sql`removed as (${removeJobsOf("changed")})`);
    effects.push("removed");
  }
  // Data-modifying, so it runs without being read.
  if (spec.takeJob) ctes.push(sql`taken as (${deleteTakenJobs("changed", "taken_job")})`);
  if (spec.notify) {
    const { channel, payload, when } = spec.notify;
    ctes.push(sql`notified as (select pg_notify(${channel}, ${payload}) from changed where ${when ?? sql`true`}
    )`);
    effects.push("notified");
  }
  return sql<TaskRow>`with ${sql.join(ctes, sql`, `)} select ${changedColumns} from changed ${forcing(...effects)} order by changed.id`;
}

/**
 * A change of tasks that is not a transition (the status stays, no history row): a heartbeat or
 * a cancel request. `update tasks set <set>, updated_at = now() where <where>`, with an optional
 * notification per changed row, returning the changed rows.
 */
export function mark(spec: { set: RawBuilder<unknown>; where: RawBuilder<unknown>; notify?: { channel: string; payload: RawBuilder<string>; when?: RawBuilder<boolean> } }): RawBuilder<TaskRow> {
  const notify = spec.notify;
  return sql<TaskRow>`
    with changed as (
      update tasks set ${spec.set}
        , updated_at = now()
      where ${spec.where}
      returning ${columns}
    )${notify ? sql`, notified as (select pg_notify(${notify.channel}, ${notify.payload}) from changed where ${notify.when ?? sql`true`}
    )` : sql``}
    select ${changedColumns} from changed ${notify ? forcing("notified") : sql``} order by changed.id`;
}
