import { sql, type Kysely } from "kysely";
import { taskColumns, type Database, type TaskRow, type TaskStatus } from "./schema.js";
import { queryPrepared, type Db } from "./db.js";
import { transition } from "./transitions.js";

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
}

/**
 * Inserts tasks, their "created" history rows and their graphile-worker jobs in ONE statement, so a
 * task never exists without its job nor a job without its task, and a batch costs one round trip.
 * Tasks whose idempotency key already exists are not inserted (the caller resolves them).
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
    })),
  );
  return transition({
    with: [
      sql`input as (
        select * from jsonb_to_recordset(${input}::jsonb) as x(
          ord int, name text, type text, parameters jsonb, priority int, max_attempts int,
          timeout_ms int, run_at timestamptz, idempotency_key text, request_hash text))`,
    ],
    change: {
      insert: sql`insert into tasks (name, type, parameters, priority, max_attempts, timeout_ms, run_at, idempotency_key, request_hash)
        select name, type, parameters, priority, max_attempts, timeout_ms, coalesce(run_at, now()), idempotency_key, request_hash
        from input order by ord
        on conflict (idempotency_key) where idempotency_key is not null do nothing`,
    },
    details: sql`case
      when run_at > now() then 'created, scheduled for ' || to_char(run_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
      else 'created' end`,
    enqueue: true,
  });
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
  /** Only ids below this (keyset paging, newest first). */
  beforeId?: string;
  offset?: number;
  limit: number;
}

/**
 * Largest parameters or result a list returns inline (JSON bytes); larger ones are replaced by
 * listedPayloadNote's object, so a page stays small whatever the tasks hold. GetTask returns them whole.
 */
export const LIST_PAYLOAD_BYTES = 16 * 1024;

/** What a list shows instead of a payload larger than LIST_PAYLOAD_BYTES. */
function cappedPayload(column: "parameters" | "result") {
  const bytes = sql.ref(`${column}_bytes`);
  const value = sql.ref(column);
  return sql<Record<string, unknown>>`case when ${bytes} > ${LIST_PAYLOAD_BYTES}::int then jsonb_build_object(
      'omitted', ${`${column} larger than ${LIST_PAYLOAD_BYTES} bytes are left out of lists; GetTask returns them`}::text,
      'bytes', ${bytes}) else ${value} end`.as(column);
}

const listedColumns = taskColumns.filter((c) => c !== "parameters" && c !== "result");

/**
 * Tasks newest first (id descending: stable under concurrent inserts), plus the filtered total.
 * Parameters and results over LIST_PAYLOAD_BYTES are replaced by a note with their size.
 */
export async function listTasks(db: Kysely<Database>, filter: TaskFilter): Promise<{ rows: TaskRow[]; total: number }> {
  let base = db.selectFrom("tasks");
  if (filter.statuses.length > 0) base = base.where("status", "in", filter.statuses);
  if (filter.types.length > 0) base = base.where("type", "in", filter.types);
  if (filter.ids.length > 0) base = base.where("id", "in", filter.ids);
  let page = base.select([...listedColumns, cappedPayload("parameters"), cappedPayload("result")]).orderBy("id", "desc").limit(filter.limit);
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
