import { sql, type Kysely } from "kysely";
import { ScheduleExistsError } from "../errors.js";
import { UNFINISHED } from "./lifecycle/index.js";
import type { CatchUpPolicy, Database, OverlapPolicy, ScheduleRow, TaskStatus } from "./schema.js";

/** A validated schedule definition, as stored. */
export interface NewSchedule {
  name: string;
  cron: string;
  timeZone: string;
  type: string;
  /** The template, placeholders unrendered. */
  parameters: Record<string, unknown>;
  priority: number;
  /** 0: the type's default at tick time. */
  maxAttempts: number;
  /** null: the type's default at tick time. */
  timeoutMs: number | null;
  paused: boolean;
  catchUp: CatchUpPolicy;
  backfillLimit: number;
  overlap: OverlapPolicy;
  /** The key of each tick's task; null: none given. */
  key: string | null;
  /** The labels each tick's task requires (sorted "key=value" pairs); null/undefined: none. */
  labels?: string[] | null;
}

/** A schedule with the status of the latest task it created. */
export type ScheduleView = ScheduleRow & { last_task_status: TaskStatus | null };

function columns(s: NewSchedule) {
  return {
    name: s.name,
    cron: s.cron,
    time_zone: s.timeZone,
    type: s.type,
    parameters: JSON.stringify(s.parameters),
    priority: s.priority,
    max_attempts: s.maxAttempts,
    timeout_ms: s.timeoutMs,
    paused: s.paused,
    catch_up: s.catchUp,
    backfill_limit: s.backfillLimit,
    overlap: s.overlap,
    key: s.key,
    labels: s.labels && s.labels.length > 0 ? s.labels : null,
  };
}

/** Turns the unique violation on schedules.name into the domain error. */
async function uniqueName<T>(name: string, write: Promise<T>): Promise<T> {
  try {
    return await write;
  } catch (err) {
    if ((err as { code?: string; constraint?: string }).code === "23505" && (err as { constraint?: string }).constraint === "schedules_name_key") {
      throw new ScheduleExistsError(name);
    }
    throw err;
  }
}

/** Stores a new schedule; a taken name is ScheduleExistsError and stores nothing. */
export async function insertSchedule(db: Kysely<Database>, schedule: NewSchedule, nextRunAt: Date | null): Promise<ScheduleRow> {
  return uniqueName(
    schedule.name,
    db.insertInto("schedules").values({ ...columns(schedule), next_run_at: nextRunAt }).returningAll().executeTakeFirstOrThrow(),
  );
}

function withLastStatus(db: Kysely<Database>) {
  return db
    .selectFrom("schedules as s")
    .leftJoin("tasks as t", "t.id", "s.last_task_id")
    .selectAll("s")
    .select("t.status as last_task_status");
}

/** One schedule by name, or undefined. */
export async function findSchedule(db: Kysely<Database>, name: string): Promise<ScheduleView | undefined> {
  return withLastStatus(db).where("s.name", "=", name).executeTakeFirst();
}

/** Schedules by name, after `afterName` (keyset paging). */
export async function listSchedules(db: Kysely<Database>, afterName: string | undefined, limit: number): Promise<ScheduleView[]> {
  let query = withLastStatus(db).orderBy("s.name").limit(limit);
  if (afterName !== undefined) query = query.where("s.name", ">", afterName);
  return query.execute();
}

/**
 * Replaces a schedule's definition unless it is already exactly this one (jsonb compares by
 * value, so key order in parameters does not count as a change). `nextRunAt` is the first tick
 * after now of the new definition; it is stored only when the timing changed (expression, zone,
 * or paused flag), so an edit of the parameters keeps the pending tick. Returns the row and
 * whether it changed, or undefined when there is no schedule by that name.
 */
export async function replaceSchedule(
  db: Kysely<Database>,
  currentName: string,
  schedule: NewSchedule,
  nextRunAt: Date | null,
): Promise<{ row: ScheduleRow; changed: boolean } | undefined> {
  const c = columns(schedule);
  const updated = await uniqueName(
    schedule.name,
    sql<ScheduleRow>`
      update schedules set
        name = ${c.name}, cron = ${c.cron}, time_zone = ${c.time_zone}, type = ${c.type},
        parameters = ${c.parameters}::jsonb, priority = ${c.priority}, max_attempts = ${c.max_attempts},
        timeout_ms = ${c.timeout_ms}, paused = ${c.paused}, catch_up = ${c.catch_up},
        backfill_limit = ${c.backfill_limit}, overlap = ${c.overlap}, key = ${c.key}::text, labels = ${c.labels}::text[], updated_at = now(),
        next_run_at = case
          when (cron, time_zone, paused) is distinct from (${c.cron}, ${c.time_zone}, ${c.paused}) then ${nextRunAt}::timestamptz
          else next_run_at end
      where name = ${currentName}
        and (name, cron, time_zone, type, parameters, priority, max_attempts, timeout_ms, paused, catch_up, backfill_limit, overlap, key, labels)
          is distinct from
            (${c.name}, ${c.cron}, ${c.time_zone}, ${c.type}, ${c.parameters}::jsonb, ${c.priority}, ${c.max_attempts},
             ${c.timeout_ms}::integer, ${c.paused}, ${c.catch_up}, ${c.backfill_limit}, ${c.overlap}, ${c.key}::text, ${c.labels}::text[])
      returning *
    `.execute(db),
  );
  if (updated.rows[0]) return { row: updated.rows[0], changed: true };
  const row = await db.selectFrom("schedules").selectAll().where("name", "=", currentName).executeTakeFirst();
  return row && { row, changed: false };
}

/** Pauses (nextRunAt null) or resumes a schedule; undefined when there is none by that name. */
export async function setSchedulePaused(db: Kysely<Database>, name: string, paused: boolean, nextRunAt: Date | null): Promise<ScheduleRow | undefined> {
  return db
    .updateTable("schedules")
    .set({ paused, next_run_at: nextRunAt, updated_at: new Date() })
    .where("name", "=", name)
    .returningAll()
    .executeTakeFirst();
}

/** Deletes a schedule (its tasks stay, their schedule_id set to null); false when there is none. */
export async function deleteSchedule(db: Kysely<Database>, name: string): Promise<boolean> {
  const result = await db.deleteFrom("schedules").where("name", "=", name).executeTakeFirst();
  return result.numDeletedRows > 0n;
}

/**
 * Locks one unpaused schedule whose next tick is due at `now`, skipping schedules another
 * process has locked: a scheduler holds the row until the transaction that creates the tick's
 * task and advances next_run_at commits, so a racing process either skips it or, after the
 * commit, no longer finds it due.
 */
export async function claimDueSchedule(trx: Kysely<Database>, now: Date): Promise<ScheduleRow | undefined> {
  return trx
    .selectFrom("schedules")
    .selectAll()
    .where(sql<boolean>`not paused`) // literal, to match the partial index schedules_next_run_idx
    .where("next_run_at", "<=", now)
    .orderBy("next_run_at")
    .limit(1)
    .forUpdate()
    .skipLocked()
    .executeTakeFirst();
}

/** When the earliest unpaused schedule is next due, or undefined when none is. */
export async function nextDueAt(db: Kysely<Database>): Promise<Date | undefined> {
  const row = await db
    .selectFrom("schedules")
    .select((eb) => eb.fn.min("next_run_at").as("at"))
    .where(sql<boolean>`not paused`) // literal, to match the partial index schedules_next_run_idx
    .executeTakeFirst();
  return (row?.at as Date | null | undefined) ?? undefined;
}

/** What handling a schedule's due ticks did, to record on its row. */
export interface TickOutcome {
  nextRunAt: Date | null;
  /** The latest task created, if any. */
  created?: { taskId: string; scheduledAt: Date };
  /** Why a tick created nothing, when none did; null clears it. */
  note: string | null;
}

/** Advances a claimed schedule past the ticks just handled and records what they did. */
export async function recordTicks(trx: Kysely<Database>, scheduleId: string, outcome: TickOutcome): Promise<void> {
  let update = trx.updateTable("schedules").set({ next_run_at: outcome.nextRunAt, last_error: outcome.note }).where("id", "=", scheduleId);
  if (outcome.created) update = update.set({ last_task_id: outcome.created.taskId, last_run_at: outcome.created.scheduledAt });
  await update.execute();
}

/**
 * Moves a schedule whose tick keeps failing past it, recording why; only if no one has moved it
 * since (its next_run_at is still `tick`).
 */
export async function skipFailedTick(db: Kysely<Database>, scheduleId: string, tick: Date, nextRunAt: Date | null, note: string): Promise<void> {
  await db
    .updateTable("schedules")
    .set({ next_run_at: nextRunAt, last_error: note })
    .where("id", "=", scheduleId)
    .where("next_run_at", "=", tick)
    .execute();
}

/** Records a task created outside the tick loop (TriggerSchedule) as the schedule's latest run. */
export async function recordManualRun(trx: Kysely<Database>, scheduleId: string, taskId: string, scheduledAt: Date): Promise<void> {
  await trx.updateTable("schedules").set({ last_task_id: taskId, last_run_at: scheduledAt, last_error: null }).where("id", "=", scheduleId).execute();
}

/** The schedule's tasks that have not finished, oldest first. */
export async function unfinishedScheduleTasks(db: Kysely<Database>, scheduleId: string): Promise<{ id: string; status: TaskStatus }[]> {
  return db
    .selectFrom("tasks")
    .select(["id", "status"])
    .where("schedule_id", "=", scheduleId)
    // Literal (not bound) so the planner can use the partial index tasks_schedule_unfinished_idx.
    // Unfinished includes PAUSED: named by the finished statuses, like the index (migration 0013).
    .where(UNFINISHED)
    .orderBy("id")
    .execute();
}

/** The task a schedule created for a tick, if any. */
export async function findTickTask(db: Kysely<Database>, scheduleId: string, scheduledAt: Date) {
  return db.selectFrom("tasks").selectAll().where("schedule_id", "=", scheduleId).where("scheduled_at", "=", scheduledAt).executeTakeFirst();
}
