import { sql, type Kysely } from "kysely";
import type { Database, TaskProgressRow } from "./schema.js";

/** Longest progress message stored, in characters (longer ones are cut). */
export const MAX_PROGRESS_MESSAGE = 500;

/**
 * Stores an attempt's latest progress: overwrites the task's row, keeping the attempt's first report
 * (the rate is measured from it) unless this is a new attempt. One statement; callers throttle.
 *
 * Committed asynchronously: the FROM item sets synchronous_commit off for this statement's own
 * transaction (set_config(..., true) lasts until its commit, which it governs), so a report never
 * waits for a WAL flush. Progress is a hint: a crash may lose the last reports, never a task's state.
 */
export async function saveProgress(db: Kysely<Database>, taskId: string, attempt: number, fraction: number, message: string): Promise<void> {
  await sql`
    insert into task_progress as p (task_id, attempt, fraction, message, first_fraction, first_at, updated_at)
    select ${taskId}, ${attempt}, ${fraction}, ${message}, ${fraction}, now(), now()
    from (select set_config('synchronous_commit', 'off', true)) as async_commit
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
