import { sql, type Kysely, type RawBuilder } from "kysely";
import { taskColumns, type Database, type TaskRow, type TaskStatus } from "./schema.js";
import { inPreparedTransaction, queryPrepared, type Db } from "./db.js";
import { auditInsert, type AuditEntry } from "./audit.js";
import { countTasksMatching } from "./task-counts.js";
import { createTasks, type NewTask } from "./lifecycle/create.js";

/** Counts per status come from the maintained counts (task-counts.ts), never from counting tasks. */
export { countTasksByStatus } from "./task-counts.js";

export type { NewTask, UniqueWhile } from "./lifecycle/create.js";
export { findUniqueHolders } from "./lifecycle/create.js";

/**
 * Creates tasks (lifecycle event `create`, see lifecycle/create.ts): one statement inserts them,
 * their history rows and their jobs. Returns the inserted rows in input order (ids ascend with
 * input order); tasks whose idempotency key or schedule tick already exists are not inserted.
 */
export async function insertTasks(db: Db, tasks: NewTask[]): Promise<TaskRow[]> {
  return tasks.length === 0 ? [] : queryPrepared(db, "task_insert_tasks", createTasks(tasks));
}

/**
 * insertTasks with the audit rows `audit` makes of the inserted tasks, committed together in one
 * transaction; the create statement stays a prepared one (CreateTask's hot path).
 */
export async function insertTasksAudited(db: Db, tasks: NewTask[], audit: (rows: TaskRow[]) => AuditEntry[]): Promise<TaskRow[]> {
  if (tasks.length === 0) return [];
  return inPreparedTransaction(db, async (query) => {
    const rows = await query(createTasks(tasks).compile(db.kysely), "task_insert_tasks");
    const entries = audit(rows);
    if (entries.length > 0) await query(auditInsert(db.kysely, entries).compile());
    return rows;
  });
}

/** insertTasks inside the caller's transaction (which needs its one connection, so no prepared statement). */
export async function insertTasksInTransaction(trx: Kysely<Database>, tasks: NewTask[]): Promise<TaskRow[]> {
  return tasks.length === 0 ? [] : (await createTasks(tasks).execute(trx)).rows;
}

/** Existing tasks by idempotency key. */
export async function findTasksByIdempotencyKeys(db: Kysely<Database>, keys: string[]): Promise<TaskRow[]> {
  if (keys.length === 0) return [];
  return db.selectFrom("tasks").selectAll().where("idempotency_key", "in", keys).execute();
}

/** Tasks by id (those that exist), in no particular order. */
export async function findTasks(db: Kysely<Database>, ids: string[]): Promise<TaskRow[]> {
  if (ids.length === 0) return [];
  return db.selectFrom("tasks").selectAll().where("id", "in", ids).execute();
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
  /** Only tasks in these queues. */
  queues?: string[];
  /** Only tasks whose name starts with this (LIKE prefix, wildcards escaped). */
  namePrefix?: string;
  /** Only tasks created at or after this. */
  createdAfter?: Date;
  /** Only tasks created before this. */
  createdBefore?: Date;
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
function cappedPayload(column: "parameters" | "result"): RawBuilder<unknown> {
  const bytes = sql.ref(`${column}_bytes`);
  const value = sql.ref(column);
  return sql`case when ${bytes} > ${LIST_PAYLOAD_BYTES}::int then jsonb_build_object(
      'omitted', ${`${column} larger than ${LIST_PAYLOAD_BYTES} bytes are left out of lists; GetTask returns them`}::text,
      'bytes', ${bytes}) else ${value} end as ${sql.ref(column)}`;
}

/** The columns a list returns: every column, with large payloads replaced (see cappedPayload). */
const listedSelection = sql.join([
  ...taskColumns.filter((c) => c !== "parameters" && c !== "result").map((c) => sql.ref(c)),
  cappedPayload("parameters"),
  cappedPayload("result"),
]);

/** Beyond this many matches a total that has to be counted row by row is reported as a lower bound. */
export const TOTAL_COUNT_CAP = 10_000;

/** Up to this many statuses or types get an index range each (see pageIdsQuery). */
const MAX_INDEX_RANGES = 10;

/** A page of tasks and the number matching the filter (exact, or at least `total` when not). */
export interface TaskPage {
  rows: TaskRow[];
  total: number;
  totalExact: boolean;
}

/**
 * Tasks newest first (id descending: stable under concurrent inserts), plus the filtered total.
 * Parameters and results over LIST_PAYLOAD_BYTES are replaced by a note with their size. The
 * page costs the same at any keyset depth (an index range per status or type, read from beforeId);
 * the total comes from the maintained counts for status and type filters, and is counted up to
 * TOTAL_COUNT_CAP otherwise.
 */
export async function listTasks(db: Kysely<Database>, filter: TaskFilter): Promise<TaskPage> {
  const window = await createdIdWindow(db, filter);
  if (window === "empty") return { rows: [], total: 0, totalExact: true };
  const bounded = { ...filter, ...window };
  const [{ rows }, total] = await Promise.all([listPageQuery(bounded).execute(db), countMatching(db, bounded)]);
  return { rows, ...total };
}

/**
 * How far a task's created_at may lag behind the order of ids. An id is drawn when the row is
 * inserted and created_at is the inserting transaction's start, so a task inserted N seconds into
 * its transaction sorts among tasks created N seconds later. Every insert here is one statement in
 * a short transaction (CreateTask(s), a schedule's tick), far below this margin.
 */
export const CREATED_AT_SKEW_MS = 60_000;

/** Ids bounding a time range: tasks created in it have ids in [minId, maxIdExclusive). */
export interface IdWindow {
  minId?: string;
  maxIdExclusive?: string;
}

/**
 * Turns a created_at range into an id range, so a time-filtered page reads tasks_pkey from the
 * range's end like any other page instead of scanning all tasks created in the range (or, the
 * planner's usual choice, every newer task). Ids grow with created_at up to CREATED_AT_SKEW_MS,
 * so each bound is the first id created at or after the bound widened by that margin, found by a
 * binary search over the primary key (~log2(ids) index probes); the exact created_at condition
 * then drops the few rows inside the margin. "empty" when no id can match.
 */
export async function createdIdWindow(db: Kysely<Database>, filter: Pick<TaskFilter, "createdAfter" | "createdBefore">): Promise<IdWindow | "empty"> {
  const { createdAfter: after, createdBefore: before } = filter;
  if (!after && !before) return {};
  if (after && before && after >= before) return "empty";
  const [lo, hi] = await Promise.all([
    after ? firstIdCreatedFrom(db, new Date(after.getTime() - CREATED_AT_SKEW_MS)) : undefined,
    before ? firstIdCreatedFrom(db, new Date(before.getTime() + CREATED_AT_SKEW_MS)) : undefined,
  ]);
  if (lo !== undefined && hi !== undefined && BigInt(lo) >= BigInt(hi)) return "empty";
  return { minId: lo, maxIdExclusive: hi };
}

/** The statement firstIdCreatedFrom runs (exported so tests can EXPLAIN it). */
export function firstIdCreatedFromQuery(at: Date) {
  // Invariant: ids below lo were created before `at`, ids from hi on at or after it (hi starts past
  // the last id). Each step probes the first id at or after the middle of [lo, hi) by primary key.
  return sql<{ id: string }>`
    with recursive search(lo, hi) as (
      select coalesce((select min(id) from tasks), 1), coalesce((select max(id) from tasks), 0) + 1
      union all
      select case when probe.id is null then s.lo when probe.created_at >= ${at} then s.lo else probe.id + 1 end,
             case when probe.id is null then s.lo + (s.hi - s.lo) / 2 when probe.created_at >= ${at} then probe.id else s.hi end
      from search s
      left join lateral (
        select id, created_at from tasks where id >= s.lo + (s.hi - s.lo) / 2 and id < s.hi order by id limit 1
      ) probe on true
      where s.lo < s.hi
    )
    select min(hi)::text as id from search
  `;
}

/** The first id (by the binary search of createdIdWindow) of a task created at or after `at`; past the last id when none. */
async function firstIdCreatedFrom(db: Kysely<Database>, at: Date): Promise<string> {
  const { rows } = await firstIdCreatedFromQuery(at).execute(db);
  return rows[0]!.id;
}

/** The statement that reads one page of listTasks (exported so tests can EXPLAIN it). */
export function listPageQuery(filter: TaskFilter & IdWindow) {
  return sql<TaskRow>`select ${listedSelection} from tasks where id in (${pageIdsQuery(filter)}) order by id desc`;
}

/**
 * The ids of one page. A filter on several statuses (or types) cannot read one index in id order,
 * so each value gets its own index range, limited to the page's end, and the ranges are merged:
 * the cost is the number of values times the page, however many tasks match. A deep page_number
 * (offset) still reads every row before it, from the index alone (ids only), and is capped by
 * validation.
 */
function pageIdsQuery(filter: TaskFilter & IdWindow) {
  const statuses = [...new Set(filter.statuses)];
  const types = [...new Set(filter.types)];
  const shared: RawBuilder<unknown>[] = [];
  if (filter.ids.length > 0) shared.push(sql`id = any(${filter.ids}::bigint[])`);
  if (filter.scheduleIds?.length) shared.push(sql`schedule_id = any(${filter.scheduleIds}::bigint[])`);
  if (filter.queues?.length) shared.push(sql`queue = any(${filter.queues}::text[])`);
  shared.push(...rangeConditions(filter));
  if (filter.beforeId !== undefined) shared.push(sql`id < ${filter.beforeId}`);
  let ranges: RawBuilder<unknown>[] = [];
  if (statuses.length > 1 && statuses.length <= MAX_INDEX_RANGES) {
    ranges = statuses.map((s) => sql`status = ${s}`);
    if (types.length > 0) shared.push(sql`type = any(${types}::text[])`);
  } else if (statuses.length === 0 && types.length > 1 && types.length <= MAX_INDEX_RANGES) {
    ranges = types.map((t) => sql`type = ${t}`);
  } else {
    shared.push(...valueConditions(statuses, types));
  }
  const offset = filter.offset ?? 0;
  const where = (extra?: RawBuilder<unknown>) => {
    const all = extra ? [extra, ...shared] : shared;
    return all.length > 0 ? sql`where ${sql.join(all, sql` and `)}` : sql``;
  };
  if (ranges.length === 0) return sql`select id from tasks ${where()} order by id desc offset ${offset} limit ${filter.limit}`;
  const parts = ranges.map((range) => sql`(select id from tasks ${where(range)} order by id desc limit ${offset + filter.limit})`);
  return sql`select id from (${sql.join(parts, sql` union all `)}) ranges order by id desc offset ${offset} limit ${filter.limit}`;
}

function valueConditions(statuses: TaskStatus[], types: string[]): RawBuilder<unknown>[] {
  const conditions: RawBuilder<unknown>[] = [];
  if (statuses.length === 1) conditions.push(sql`status = ${statuses[0]}`);
  else if (statuses.length > 1) conditions.push(sql`status = any(${statuses}::task_status[])`);
  if (types.length === 1) conditions.push(sql`type = ${types[0]}`);
  else if (types.length > 1) conditions.push(sql`type = any(${types}::text[])`);
  return conditions;
}

/** Name and time conditions (the id window from createdIdWindow, then the exact times). */
function rangeConditions(filter: TaskFilter & IdWindow): RawBuilder<unknown>[] {
  const conditions: RawBuilder<unknown>[] = [];
  if (filter.namePrefix) conditions.push(sql`name like ${likePrefix(filter.namePrefix)}`);
  if (filter.minId !== undefined) conditions.push(sql`id >= ${filter.minId}`);
  if (filter.maxIdExclusive !== undefined) conditions.push(sql`id < ${filter.maxIdExclusive}`);
  if (filter.createdAfter) conditions.push(sql`created_at >= ${filter.createdAfter}`);
  if (filter.createdBefore) conditions.push(sql`created_at < ${filter.createdBefore}`);
  return conditions;
}

/** A LIKE pattern matching names that start with `prefix` literally (\\, % and _ escaped). */
/** A LIKE pattern matching names that start with `prefix` literally (%, _ and \\ escaped). */
export function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** Whether the filter has conditions the maintained counts do not keep (so its total is counted). */
function countedRowByRow(filter: TaskFilter): boolean {
  return filter.ids.length > 0 || !!filter.scheduleIds?.length || !!filter.namePrefix || !!filter.createdAfter || !!filter.createdBefore;
}

/** The filter's total: exact from the counts for status and type filters, else counted up to the cap. */
async function countMatching(db: Kysely<Database>, filter: TaskFilter): Promise<{ total: number; totalExact: boolean }> {
  if (!countedRowByRow(filter)) return { total: await countTasksMatching(db, filter.statuses, filter.types, filter.queues ?? []), totalExact: true };
  const { rows } = await cappedCountQuery(filter).execute(db);
  const n = Number(rows[0]?.n ?? 0);
  return n > TOTAL_COUNT_CAP ? { total: TOTAL_COUNT_CAP, totalExact: false } : { total: n, totalExact: true };
}

/** Counts the filter's matches row by row, stopping after TOTAL_COUNT_CAP + 1 (exported for EXPLAIN tests). */
export function cappedCountQuery(filter: TaskFilter & IdWindow) {
  const conditions = [...valueConditions([...new Set(filter.statuses)], [...new Set(filter.types)])];
  if (filter.ids.length > 0) conditions.unshift(sql`id = any(${filter.ids}::bigint[])`);
  if (filter.scheduleIds?.length) conditions.unshift(sql`schedule_id = any(${filter.scheduleIds}::bigint[])`);
  if (filter.queues?.length) conditions.unshift(sql`queue = any(${filter.queues}::text[])`);
  conditions.push(...rangeConditions(filter));
  const where = conditions.length > 0 ? sql`where ${sql.join(conditions, sql` and `)}` : sql``;
  return sql<{ n: string }>`select count(*) as n from (select 1 from tasks ${where} limit ${TOTAL_COUNT_CAP + 1}) capped`;
}

/** These tasks as a list shows them (large payloads replaced), in no particular order. */
export async function findListedTasks(db: Kysely<Database>, ids: string[]): Promise<TaskRow[]> {
  if (ids.length === 0) return [];
  const { rows } = await sql<TaskRow>`select ${listedSelection} from tasks where id = any(${ids}::bigint[])`.execute(db);
  return rows;
}
