import { sql, type Kysely } from "kysely";
import type { Database, TaskStatus } from "./schema.js";

/**
 * Attempts that ended, per minute and outcome, kept by migration 0017's trigger: task_finishes
 * plus the deltas not folded into it yet. Like the task counts (task-counts.ts), a read costs
 * O(minutes x outcomes + unfolded deltas) and never touches tasks.
 */

/** The outcomes counted: the terminal statuses, and retrying (an attempt failed and will be retried). */
export type FinishStatus = Extract<TaskStatus, "succeeded" | "failed" | "cancelled" | "retrying">;

/** How many attempts ended with each outcome in one minute. */
export interface FinishMinute {
  /** Start of the minute. */
  minute: Date;
  counts: Record<FinishStatus, number>;
}

/** How long folded minutes are kept (and the most GetTaskThroughput reads): a day, far more than the chart shows, and ~6,000 rows at most. */
export const FINISHES_KEPT_MINUTES = 24 * 60;

/** The statement lastMinutesFinishes runs (exported so tests can EXPLAIN it). */
export function lastMinutesFinishesQuery(minutes: number) {
  return sql<{ minute: Date; status: FinishStatus | null; n: string | null; first: Date }>`
    with bounds as (select date_trunc('minute', now()) - make_interval(mins => ${minutes - 1}) as first)
    select minutes.minute, minutes.status, minutes.n, bounds.first from bounds left join lateral (
      select minute, status, sum(n) as n from (
        select minute, status, count as n from task_finishes where minute >= bounds.first
        union all
        select minute, status, delta from task_finish_deltas where minute >= bounds.first
      ) unioned
      group by minute, status
    ) minutes on true
  `;
}

/**
 * One entry per minute for the last `minutes` minutes of database time, the current minute last;
 * minutes without finishes have zero counts.
 */
export async function lastMinutesFinishes(db: Kysely<Database>, minutes: number): Promise<FinishMinute[]> {
  const { rows } = await lastMinutesFinishesQuery(minutes).execute(db);
  const first = rows[0]!.first.getTime();
  const byMinute = new Map<number, FinishMinute>();
  for (let i = 0; i < minutes; i++) {
    const t = first + i * 60_000;
    byMinute.set(t, { minute: new Date(t), counts: { succeeded: 0, failed: 0, cancelled: 0, retrying: 0 } });
  }
  for (const r of rows) {
    const entry = r.status && byMinute.get(r.minute.getTime());
    if (entry) entry.counts[r.status!] += Number(r.n);
  }
  return [...byMinute.values()];
}

// Arbitrary fixed key ("tfin" in ASCII): one rollup at a time; the others skip rather than queue.
const ROLLUP_LOCK_KEY = 0x7466696e;

/**
 * Folds the appended finish deltas into task_finishes and drops minutes older than
 * FINISHES_KEPT_MINUTES, in one statement (a concurrent read sees the deltas in exactly one of the
 * two tables). Returns the number of deltas folded, or 0 when another rollup holds the lock.
 */
export async function foldTaskFinishDeltas(db: Kysely<Database>): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const { rows: lock } = await sql<{ ok: boolean }>`select pg_try_advisory_xact_lock(${ROLLUP_LOCK_KEY}) as ok`.execute(trx);
    if (!lock[0]?.ok) return 0;
    const { rows } = await sql<{ n: string }>`
      with folded as (
        delete from task_finish_deltas returning minute, status, delta
      ),
      summed as (
        insert into task_finishes (minute, status, count)
        select minute, status, sum(delta) from folded group by minute, status
        on conflict (minute, status) do update set count = task_finishes.count + excluded.count
        returning 1
      ),
      expired as (
        delete from task_finishes where minute < date_trunc('minute', now()) - make_interval(mins => ${FINISHES_KEPT_MINUTES})
        returning 1
      )
      select (select count(*) from folded) as n, (select count(*) from summed) as groups, (select count(*) from expired) as expired
    `.execute(trx);
    return Number(rows[0]?.n ?? 0);
  });
}
