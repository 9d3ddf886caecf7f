import { sql, type Kysely, type RawBuilder } from "kysely";
import type { Database, TaskStatus } from "./schema.js";
import { likePrefix } from "./tasks.js";
import { cancelTasks, deleteTasks, GUARDS, pauseTasks, resumeTasks, retryTasks } from "./lifecycle/index.js";

/**
 * Bulk actions (BulkTasks): a selection of tasks, walked in id order in bounded batches, each batch
 * one or two short statements of its own (no transaction or lock spans the run). Every action is a
 * lifecycle event (store/lifecycle), with its own guard, so a task that changed state under the run is skipped, and repeating a run
 * changes only what the first one did not.
 */

/** Which tasks a bulk action applies to: ids, or filters that must all hold. */
export interface TaskSelection {
  ids: string[];
  statuses: TaskStatus[];
  types: string[];
  queues: string[];
  createdAfter?: Date;
  createdBefore?: Date;
  /** Case-insensitive substring of the name. */
  nameContains?: string;
  /** Case-sensitive start of the name (ListTasks' name_prefix). */
  namePrefix?: string;
}

/** The selection as SQL conditions over tasks (none: every task). One line per filter. */
function selectionConditions(s: TaskSelection): RawBuilder<unknown>[] {
  const c: RawBuilder<unknown>[] = [];
  if (s.ids.length > 0) c.push(sql`id = any(${s.ids}::bigint[])`);
  if (s.statuses.length > 0) c.push(sql`status = any(${s.statuses}::task_status[])`);
  if (s.types.length > 0) c.push(sql`type = any(${s.types}::text[])`);
  if (s.queues.length > 0) c.push(sql`queue = any(${s.queues}::text[])`);
  if (s.createdAfter) c.push(sql`created_at >= ${s.createdAfter}::timestamptz`);
  if (s.createdBefore) c.push(sql`created_at < ${s.createdBefore}::timestamptz`);
  // strpos, not LIKE: the text is matched literally, % and _ included.
  if (s.nameContains) c.push(sql`strpos(lower(name), lower(${s.nameContains})) > 0`);
  if (s.namePrefix) c.push(sql`name like ${likePrefix(s.namePrefix)}`);
  return c;
}

function whereAll(conditions: RawBuilder<unknown>[]): RawBuilder<unknown> {
  return conditions.length > 0 ? sql.join(conditions, sql` and `) : sql`true`;
}

/** The actions, each with the statuses it applies to (the dry run counts by these). */
export type BulkActionName = "cancel" | "retry" | "pause" | "resume" | "delete";

/** What an action needs to know about this server's plugins. */
export interface BulkContext {
  /** Types this server runs (retry refuses the others, as RetryTask does). */
  runnableTypes: string[];
  /** Types whose plugin can pause a running attempt. */
  pausableTypes: string[];
  /** For cancel: recorded in each task's history. */
  reason: string | null;
}

/** The SQL condition "the action applies to this task now": the event's guard, and what this server can do. */
export function eligibility(action: BulkActionName, ctx: BulkContext): RawBuilder<boolean> {
  switch (action) {
    case "cancel":
      return GUARDS.cancel;
    case "retry":
      return sql<boolean>`(${GUARDS.retry} and type = any(${ctx.runnableTypes}::text[]))`;
    case "pause":
      return sql<boolean>`(${GUARDS.pause} and (status <> 'running' or type = any(${ctx.pausableTypes}::text[])))`;
    case "resume":
      return GUARDS.resume;
    case "delete":
      return GUARDS.delete;
  }
}

/** How many tasks the selection names, how many of them are eligible, and the highest id. */
export async function countSelection(
  db: Kysely<Database>,
  selection: TaskSelection,
  eligible: RawBuilder<boolean>,
): Promise<{ matched: number; eligible: number; maxId: string | null }> {
  const { rows } = await sql<{ matched: string; eligible: string; max_id: string | null }>`
    select count(*) as matched, count(*) filter (where ${eligible}) as eligible, max(id) as max_id
    from tasks where ${whereAll(selectionConditions(selection))}
  `.execute(db);
  const r = rows[0]!;
  return { matched: Number(r.matched), eligible: Number(r.eligible), maxId: r.max_id };
}

/**
 * The next batch of eligible selected ids after `afterId`, up to `maxId` (the highest id when the
 * run started, so tasks created during the run are not swept in), in id order.
 */
export async function nextBatch(
  db: Kysely<Database>,
  selection: TaskSelection,
  eligible: RawBuilder<boolean>,
  afterId: string,
  maxId: string,
  limit: number,
): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`
    select id from tasks
    where id > ${afterId}::bigint and id <= ${maxId}::bigint and ${whereAll(selectionConditions(selection))} and ${eligible}
    order by id limit ${limit}
  `.execute(db);
  return rows.map((r) => String(r.id));
}

/** Applies an action to one batch of ids; returns how many tasks it changed. */
export async function applyToBatch(db: Kysely<Database>, action: BulkActionName, ids: string[], ctx: BulkContext): Promise<number> {
  // Each event repeats itself if PostgreSQL breaks a deadlock with it (store/lifecycle/control.ts);
  // a repeat changes only what the first try did not.
  switch (action) {
    case "cancel":
      return (await cancelTasks(db, ids, { details: "cancelled by bulk request", reason: ctx.reason })).length;
    case "retry":
      return (await retryTasks(db, ids, "bulk retry: back to queued with attempts reset", ctx.runnableTypes)).length;
    case "pause":
      return (await pauseTasks(db, ids, ctx.pausableTypes, "paused by bulk request")).length;
    case "resume":
      return (await resumeTasks(db, ids, "resumed by bulk request")).length;
    case "delete":
      return deleteTasks(db, ids);
  }
}
