import { sql, type Kysely, type RawBuilder } from "kysely";
import type { Database, TaskStatus } from "./schema.js";
import { retryOnConflict } from "./db.js";
import { likePrefix } from "./tasks.js";
import { pauseRunningTasks, pauseWaitingTasks, resumeTasks } from "./pause.js";
import { CANCEL_CHANNEL } from "./channels.js";
import { forcing, IN_ATTEMPT, transition, WAITING } from "./transitions.js";

/**
 * Bulk actions (BulkTasks): a selection of tasks, walked in id order in bounded batches, each batch
 * one or two short statements of its own (no transaction or lock spans the run). Every action is a
 * guarded transition, so a task that changed state under the run is skipped, and repeating a run
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

/** The SQL condition "the action applies to this task now". */
export function eligibility(action: BulkActionName, ctx: BulkContext): RawBuilder<boolean> {
  switch (action) {
    case "cancel":
      return sql<boolean>`(status in ('queued', 'retrying', 'running', 'paused') and cancel_requested_at is null)`;
    case "retry":
      return sql<boolean>`(status in ('failed', 'cancelled') and type = any(${ctx.runnableTypes}::text[]))`;
    case "pause":
      return sql<boolean>`((status in ('queued', 'retrying') or (status = 'running' and type = any(${ctx.pausableTypes}::text[]))) and cancel_requested_at is null)`;
    case "resume":
      return sql<boolean>`(status = 'paused')`;
    case "delete":
      return sql<boolean>`(status in ('succeeded', 'failed', 'cancelled'))`;
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
  switch (action) {
    // Each statement is retried alone if PostgreSQL breaks a deadlock with it (retryOnConflict), so
    // what an earlier statement of the batch changed is counted once.
    case "cancel":
      return cancelTasks(db, ids, ctx.reason);
    case "retry":
      return (await retryOnConflict(() => requeueFinishedTasks(db, ids, ctx.runnableTypes))).length;
    case "pause": {
      const held = await retryOnConflict(() => pauseWaitingTasks(db, ids, "paused by bulk request"));
      const stopped = await retryOnConflict(() => pauseRunningTasks(db, ids, ctx.pausableTypes, "paused by bulk request"));
      return held.length + stopped.length;
    }
    case "resume":
      return (await retryOnConflict(() => resumeTasks(db, ids, "resumed by bulk request"))).length;
    case "delete":
      return retryOnConflict(() => deleteFinishedTasks(db, ids));
  }
}

/**
 * Cancels unfinished tasks among `ids`, in two statements that are safe in either order of events:
 * first every unfinished one gets its cancel request (which stops a claim, turns a later retry into
 * CANCELLED, and is announced to the workers running them), then the waiting ones among them become
 * CANCELLED. A task that moves between the two is covered by the request; one the second statement
 * misses is finished by the reconciler (finishPendingCancels). Returns how many were requested.
 */
export async function cancelTasks(db: Kysely<Database>, ids: string[], reason: string | null): Promise<number> {
  if (ids.length === 0) return 0;
  const { rows } = await retryOnConflict(() => sql<{ n: string }>`
    with requested as (
      update tasks set cancel_requested_at = now(), cancel_reason = coalesce(${reason}, cancel_reason), updated_at = now()
      where id = any(${ids}::bigint[]) and status in ('queued', 'retrying', 'running', 'paused') and cancel_requested_at is null
      returning id, status, worker_id
    ),
    notified as (select pg_notify(${CANCEL_CHANNEL}, id::text) from requested where ${IN_ATTEMPT})
    select count(*) as n from requested ${forcing("notified")}
  `.execute(db));
  await retryOnConflict(() => transition({
    change: {
      set: sql`status = 'cancelled', finished_at = now(), paused_from = null, paused_at = null`,
      where: sql`id = any(${ids}::bigint[]) and ${WAITING} and cancel_requested_at is not null`,
    },
    details: sql`'cancelled by bulk request' || coalesce(': ' || cancel_reason, '')`,
    removeJob: true,
  }).execute(db));
  return Number(rows[0]?.n ?? 0);
}

/** requeueFinishedTask for many ids, limited to `types` (those this server runs). */
export async function requeueFinishedTasks(db: Kysely<Database>, ids: string[], types: string[]): Promise<string[]> {
  if (ids.length === 0 || types.length === 0) return [];
  const { rows } = await transition({
    change: {
      set: sql`status = 'queued', attempts = 0, lost_attempts = 0, last_error = null, result = null, worker_id = null, job_id = null,
        heartbeat_at = null, cancel_requested_at = null, cancel_reason = null, started_at = null, finished_at = null,
        run_at = now()`,
      where: sql`id = any(${ids}::bigint[]) and status in ('failed', 'cancelled') and type = any(${types}::text[])`,
    },
    details: sql`'bulk retry: back to queued with attempts reset'::text`,
    enqueue: true,
  }).execute(db);
  return rows.map((r) => String(r.id));
}

/**
 * Deletes finished tasks among `ids` with their history and output (foreign keys cascade); the
 * task_counts delete trigger keeps the counts exact. Returns how many were deleted.
 */
export async function deleteFinishedTasks(db: Kysely<Database>, ids: string[]): Promise<number> {
  if (ids.length === 0) return 0;
  const { rows } = await sql<{ n: string }>`
    with deleted as (
      delete from tasks where id = any(${ids}::bigint[]) and status in ('succeeded', 'failed', 'cancelled') returning 1
    )
    select count(*) as n from deleted
  `.execute(db);
  return Number(rows[0]?.n ?? 0);
}
