import { sql, type Kysely } from "kysely";
import type { Database, TaskRow, TaskStatus } from "./schema.js";
import { queryPrepared, type Db } from "./db.js";
import { jobSpecsFrom, returningTaskColumns } from "./jobs.js";

/** A validated task to insert. */
export interface NewTask {
  name: string;
  type: string;
  parameters: Record<string, unknown>;
  priority: number;
  maxAttempts: number;
  timeoutMs: number;
  /** null: now. */
  runAt: Date | null;
  idempotencyKey: string | null;
  requestHash: string | null;
  /** Set for a schedule's tick: (scheduleId, scheduledAt) is unique, so a tick's task is inserted once. */
  scheduleId?: string | null;
  scheduledAt?: Date | null;
}

/**
 * Inserts tasks, their "created" history rows and their graphile-worker jobs in ONE statement, so a
 * task never exists without its job nor a job without its task, and a batch costs one round trip.
 * Tasks whose idempotency key, or schedule tick, already exists are not inserted (the caller resolves them).
 * Returns the inserted rows in input order of insertion (ids ascend with input order).
 */
export async function insertTasks(db: Db, tasks: NewTask[]): Promise<TaskRow[]> {
  return tasks.length === 0 ? [] : queryPrepared(db, "task_insert_tasks", insertTasksQuery(tasks));
}

/** insertTasks inside the caller's transaction (which needs its one connection, so no prepared statement). */
export async function insertTasksInTransaction(trx: Kysely<Database>, tasks: NewTask[]): Promise<TaskRow[]> {
  return tasks.length === 0 ? [] : (await insertTasksQuery(tasks).execute(trx)).rows;
}

function insertTasksQuery(tasks: NewTask[]) {
  const input = JSON.stringify(
    tasks.map((t, ord) => ({
      ord,
      name: t.name,
      type: t.type,
      parameters: t.parameters,
      priority: t.priority,
      max_attempts: t.maxAttempts,
      timeout_ms: t.timeoutMs,
      run_at: t.runAt?.toISOString() ?? null,
      idempotency_key: t.idempotencyKey,
      request_hash: t.requestHash,
      schedule_id: t.scheduleId ?? null,
      scheduled_at: t.scheduledAt?.toISOString() ?? null,
    })),
  );
  return sql<TaskRow>`
    with input as (
      select * from jsonb_to_recordset(${input}::jsonb) as x(
        ord int, name text, type text, parameters jsonb, priority int, max_attempts int,
        timeout_ms int, run_at timestamptz, idempotency_key text, request_hash text,
        schedule_id bigint, scheduled_at timestamptz)
    ),
    inserted as (
      insert into tasks (name, type, parameters, priority, max_attempts, timeout_ms, run_at, idempotency_key, request_hash, schedule_id, scheduled_at)
      select name, type, parameters, priority, max_attempts, timeout_ms, coalesce(run_at, now()), idempotency_key, request_hash, schedule_id, scheduled_at
      from input order by ord
      -- No conflict target: both the idempotency key and the schedule tick key mean "already there".
      on conflict do nothing
      returning ${returningTaskColumns}
    ),
    history as (
      insert into task_history (task_id, status, attempt, details)
      select id, 'queued', 0, case
        when run_at > now() then 'created, scheduled for ' || to_char(run_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
        else 'created' end
      from inserted
    ),
    jobs as (
      select count(*) as n from graphile_worker.add_jobs(${jobSpecsFrom("inserted")})
    )
    select inserted.* from inserted cross join jobs order by inserted.id
  `;
}

/** Existing tasks by idempotency key. */
export async function findTasksByIdempotencyKeys(db: Kysely<Database>, keys: string[]): Promise<TaskRow[]> {
  if (keys.length === 0) return [];
  return db.selectFrom("tasks").selectAll().where("idempotency_key", "in", keys).execute();
}

/** One task, or undefined. */
export async function findTask(db: Kysely<Database>, id: string): Promise<TaskRow | undefined> {
  return db.selectFrom("tasks").selectAll().where("id", "=", id).executeTakeFirst();
}

/** Filters and paging for listTasks. */
export interface TaskFilter {
  statuses: TaskStatus[];
  types: string[];
  ids: string[];
  /** Only tasks created by these schedules. */
  scheduleIds?: string[];
  /** Only ids below this (keyset paging, newest first). */
  beforeId?: string;
  offset?: number;
  limit: number;
}

/** Tasks newest first (id descending: stable under concurrent inserts), plus the filtered total. */
export async function listTasks(db: Kysely<Database>, filter: TaskFilter): Promise<{ rows: TaskRow[]; total: number }> {
  let base = db.selectFrom("tasks");
  if (filter.statuses.length > 0) base = base.where("status", "in", filter.statuses);
  if (filter.types.length > 0) base = base.where("type", "in", filter.types);
  if (filter.ids.length > 0) base = base.where("id", "in", filter.ids);
  if (filter.scheduleIds?.length) base = base.where("schedule_id", "in", filter.scheduleIds);
  let page = base.selectAll().orderBy("id", "desc").limit(filter.limit);
  if (filter.beforeId !== undefined) page = page.where("id", "<", filter.beforeId);
  if (filter.offset) page = page.offset(filter.offset);
  const [rows, count] = await Promise.all([
    page.execute(),
    base.select((eb) => eb.fn.countAll<string>().as("n")).executeTakeFirstOrThrow(),
  ]);
  return { rows, total: Number(count.n) };
}

/** Number of tasks in each status that has any. */
export async function countTasksByStatus(db: Kysely<Database>): Promise<Map<TaskStatus, number>> {
  const rows = await db
    .selectFrom("tasks")
    .select(["status", (eb) => eb.fn.countAll<string>().as("n")])
    .groupBy("status")
    .execute();
  return new Map(rows.map((r) => [r.status, Number(r.n)]));
}
