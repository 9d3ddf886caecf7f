import { sql, type Kysely } from "kysely";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Database, TaskStatus } from "./schema.js";

/**
 * Task counts kept by the triggers of migration 0011: task_counts plus the deltas not folded into
 * it yet. Reads cost O(groups + unfolded deltas), never a count over tasks, and are exact at the
 * statement's snapshot (the deltas commit or roll back with the change that wrote them).
 */

/** The number of tasks in one (queue, type, status) group. */
export interface TaskCountGroup {
  queue: string;
  type: string;
  status: TaskStatus;
  count: number;
}

/** Every (queue, type, status) group with tasks. */
export async function countTaskGroups(db: Kysely<Database>): Promise<TaskCountGroup[]> {
  const { rows } = await sql<{ queue: string; type: string; status: TaskStatus; n: string }>`
    select queue, type, status, sum(n) as n from (
      select queue, type, status, count as n from task_counts
      union all
      select queue, type, status, delta from task_count_deltas
    ) groups
    group by queue, type, status
    having sum(n) <> 0
  `.execute(db);
  return rows.map((r) => ({ queue: r.queue, type: r.type, status: r.status, count: Number(r.n) }));
}

/** Every (type, status) group with tasks, summed over queues. */
export async function countTasksByTypeAndStatus(db: Kysely<Database>): Promise<Omit<TaskCountGroup, "queue">[]> {
  const sums = new Map<string, Omit<TaskCountGroup, "queue">>();
  for (const g of await countTaskGroups(db)) {
    const key = `${g.type}\u0000${g.status}`;
    const entry = sums.get(key) ?? { type: g.type, status: g.status, count: 0 };
    entry.count += g.count;
    sums.set(key, entry);
  }
  return [...sums.values()];
}

/** Number of tasks in each status that has any. */
export async function countTasksByStatus(db: Kysely<Database>): Promise<Map<TaskStatus, number>> {
  const counts = new Map<TaskStatus, number>();
  for (const g of await countTasksByTypeAndStatus(db)) counts.set(g.status, (counts.get(g.status) ?? 0) + g.count);
  return counts;
}

/**
 * Tasks matching status and type filters (empty = any), from the counts. Exact, like
 * countTasksByTypeAndStatus.
 */
export async function countTasksMatching(
  db: Kysely<Database>,
  statuses: readonly TaskStatus[],
  types: readonly string[],
  queues: readonly string[] = [],
): Promise<number> {
  let total = 0;
  for (const g of await countTaskGroups(db)) {
    const matches = (statuses.length === 0 || statuses.includes(g.status)) && (types.length === 0 || types.includes(g.type)) && (queues.length === 0 || queues.includes(g.queue));
    if (matches) total += g.count;
  }
  return total;
}

// Arbitrary fixed key ("tcnt" in ASCII): one rollup at a time; the others skip rather than queue.
const ROLLUP_LOCK_KEY = 0x74636e74;

/**
 * Folds the appended deltas into task_counts in one statement: the deltas it deletes and the sums it
 * adds commit together, so a concurrent read sees either both or neither. Returns the number of
 * deltas folded, or 0 when another rollup holds the lock.
 */
export async function foldTaskCountDeltas(db: Kysely<Database>): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const { rows: lock } = await sql<{ ok: boolean }>`select pg_try_advisory_xact_lock(${ROLLUP_LOCK_KEY}) as ok`.execute(trx);
    if (!lock[0]?.ok) return 0;
    const { rows } = await sql<{ n: string }>`
      with folded as (
        delete from task_count_deltas returning queue, type, status, delta
      ),
      summed as (
        insert into task_counts (queue, type, status, count)
        select queue, type, status, sum(delta) from folded group by queue, type, status
        on conflict (queue, type, status) do update set count = task_counts.count + excluded.count
        returning 1
      )
      select (select count(*) from folded) as n, (select count(*) from summed) as groups
    `.execute(trx);
    return Number(rows[0]?.n ?? 0);
  });
}

/** How often a running API server folds the count deltas. */
export const COUNT_ROLLUP_INTERVAL_MS = 2_000;

/**
 * Folds the count deltas every `intervalMs` until stopped, so reads stay O(groups + a few seconds
 * of deltas). Folding is never needed for correctness, only for read cost; a failed fold (database
 * away) is logged and retried on the next tick.
 */
export function keepTaskCountsFolded(db: Kysely<Database>, logger: Logger, intervalMs = COUNT_ROLLUP_INTERVAL_MS): { stop(): void } {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    foldTaskCountDeltas(db)
      .catch((err: unknown) => logger.warn({ err: errorMessage(err) }, "folding task count deltas failed"))
      .finally(() => (running = false));
  }, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
