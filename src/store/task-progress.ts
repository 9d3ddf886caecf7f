import { sql, type Kysely } from "kysely";
import type { Database, TaskProgressRow } from "./schema.js";

/** Longest progress message stored, in characters (longer ones are cut). */
export const MAX_PROGRESS_MESSAGE = 500;

/** One progress report to store. */
export interface ProgressWrite {
  taskId: string;
  attempt: number;
  /** 0..1. */
  fraction: number;
  message: string;
}

/**
 * Stores attempts' latest progress, many tasks in one statement: overwrites each task's row,
 * keeping the attempt's first report (the rate is measured from it) unless this is a new attempt.
 * Several reports of one task in a batch: the last one counts. Callers throttle.
 *
 * Committed asynchronously: the FROM item sets synchronous_commit off for this statement's own
 * transaction (set_config(..., true) lasts until its commit, which it governs), so a report never
 * waits for a WAL flush. Progress is a hint: a crash may lose the last reports, never a task's state.
 */
export async function saveProgress(db: Kysely<Database>, writes: ProgressWrite[]): Promise<void> {
  // ON CONFLICT may touch a row once per statement: one report per task, the latest.
  const latest = [...new Map(writes.map((w) => [w.taskId, w])).values()];
  if (latest.length === 0) return;
  await sql`
    insert into task_progress as p (task_id, attempt, fraction, message, first_fraction, first_at, updated_at)
    select w.task_id, w.attempt, w.fraction, w.message, w.fraction, now(), now()
    from (select set_config('synchronous_commit', 'off', true)) as async_commit,
      unnest(${latest.map((w) => w.taskId)}::bigint[], ${latest.map((w) => w.attempt)}::int[], ${latest.map((w) => w.fraction)}::real[], ${latest.map((w) => w.message)}::text[])
        as w (task_id, attempt, fraction, message)
    on conflict (task_id) do update set
      attempt = excluded.attempt,
      fraction = excluded.fraction,
      message = excluded.message,
      first_fraction = case when p.attempt = excluded.attempt then p.first_fraction else excluded.fraction end,
      first_at = case when p.attempt = excluded.attempt then p.first_at else excluded.first_at end,
      updated_at = excluded.updated_at
  `.execute(db);
}

/** The progress rows of these tasks, by task id (tasks that never reported have none). */
export async function findProgress(db: Kysely<Database>, taskIds: string[]): Promise<Map<string, TaskProgressRow>> {
  if (taskIds.length === 0) return new Map();
  const rows = await db.selectFrom("task_progress").selectAll().where("task_id", "in", taskIds).execute();
  return new Map(rows.map((r) => [r.task_id, r]));
}

/** Progress reported after `since` (the database's clock), oldest first, at most `limit` rows. */
export async function progressSince(db: Kysely<Database>, since: Date, limit: number): Promise<TaskProgressRow[]> {
  return db.selectFrom("task_progress").selectAll().where("updated_at", ">", since).orderBy("updated_at").limit(limit).execute();
}

/** The database's clock now (where progressSince starts). */
export async function databaseNow(db: Kysely<Database>): Promise<Date> {
  const { rows } = await sql<{ now: Date }>`select now() as now`.execute(db);
  return rows[0]!.now;
}
