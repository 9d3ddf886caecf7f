import { sql, type Kysely } from "kysely";
import { QUEUE_CHANNEL } from "./channels.js";
import type { Database } from "./schema.js";

/**
 * Queue settings (migration 0012) and what the operator sees of a queue. A queue exists as soon as
 * a task names it; its row in `queues` only holds settings that differ from the defaults
 * (unlimited, not paused).
 */

/** The queue every task is in unless it names another. */
export const DEFAULT_QUEUE = "default";

/** One queue as ListQueues shows it. */
export interface QueueView {
  name: string;
  paused: boolean;
  /** null: unlimited. */
  concurrency: number | null;
  /** The expiry of its tasks created without one; null: none. */
  expireAfterMs: number | null;
  running: number;
  /** QUEUED and RETRYING tasks. */
  waiting: number;
  /** When the oldest waiting task (the first created) became due, or now if it is not due yet; null: none waiting. */
  oldestWaitingSince: Date | null;
  /** Live worker processes serving the queue. */
  workers: number;
  updatedAt: Date | null;
}

/**
 * Every queue that has tasks waiting or running, settings, or a live worker serving it, by name.
 * Counts of running and waiting come from the maintained task counts; the oldest waiting task is
 * one probe per queue of tasks_waiting_queue_idx (unfinished tasks only, in id order).
 */
export async function listQueues(db: Kysely<Database>, liveSince: Date): Promise<QueueView[]> {
  const { rows } = await sql<{
    name: string;
    paused: boolean | null;
    concurrency: number | null;
    expire_after_ms: number | null;
    running: string;
    waiting: string;
    oldest: Date | null;
    workers: string;
    updated_at: Date | null;
  }>`
    with counts as (
      select queue, status, sum(n) as n from (
        select queue, status, count as n from task_counts where status in ('running', 'queued', 'retrying')
        union all
        select queue, status, delta from task_count_deltas where status in ('running', 'queued', 'retrying')
      ) c group by queue, status having sum(n) <> 0
    ),
    live as (select unnest(queues) as queue, count(*) as n from workers where heartbeat_at >= ${liveSince} group by 1),
    names as (select queue as name from counts union select name from queues union select queue from live)
    select names.name, q.paused, q.concurrency, q.expire_after_ms, q.updated_at,
      coalesce((select sum(n) from counts where counts.queue = names.name and status = 'running'), 0) as running,
      coalesce((select sum(n) from counts where counts.queue = names.name and status in ('queued', 'retrying')), 0) as waiting,
      (select least(t.run_at, now()) from tasks t where t.queue = names.name and t.status in ('queued', 'retrying') order by t.id limit 1) as oldest,
      coalesce((select n from live where live.queue = names.name), 0) as workers
    from names left join queues q on q.name = names.name
    order by names.name
  `.execute(db);
  return rows.map((r) => ({
    name: r.name,
    paused: r.paused ?? false,
    concurrency: r.concurrency,
    expireAfterMs: r.expire_after_ms,
    running: Number(r.running),
    waiting: Number(r.waiting),
    oldestWaitingSince: r.oldest,
    workers: Number(r.workers),
    updatedAt: r.updated_at,
  }));
}

/** A change to a queue's settings; undefined fields stay as they are. */
export interface QueueChange {
  /** null: unlimited. */
  concurrency?: number | null;
  paused?: boolean;
  /** null: no default expiry. */
  expireAfterMs?: number | null;
}

/**
 * Applies a settings change in one statement (creating the queue's row if needed) and announces it
 * on QUEUE_CHANNEL, so workers stop fetching a paused queue's jobs, or fetch a resumed one's, at once.
 */
export async function updateQueue(db: Kysely<Database>, name: string, change: QueueChange): Promise<void> {
  const setConcurrency = change.concurrency !== undefined;
  const setPaused = change.paused !== undefined;
  const setExpiry = change.expireAfterMs !== undefined;
  await sql`
    with changed as (
      insert into queues (name, concurrency, paused, expire_after_ms)
        values (${name}, ${change.concurrency ?? null}::int, coalesce(${change.paused ?? null}::boolean, false), ${change.expireAfterMs ?? null}::int)
      on conflict (name) do update set
        concurrency = case when ${setConcurrency}::boolean then excluded.concurrency else queues.concurrency end,
        paused = case when ${setPaused}::boolean then excluded.paused else queues.paused end,
        expire_after_ms = case when ${setExpiry}::boolean then excluded.expire_after_ms else queues.expire_after_ms end,
        updated_at = now()
      returning name
    )
    select pg_notify(${QUEUE_CHANNEL}, name) from changed
  `.execute(db);
}

/**
 * Of `queues`, those that may not start an attempt now: paused, or limited with their RUNNING tasks
 * at the limit. A worker forbids their jobs' flags so it does not fetch them (src/worker/queue-gate.ts).
 * Advisory only: the claim's gate (task_queue_admits) is what guarantees the limit.
 */
export async function heldQueues(db: Kysely<Database>, queues: string[]): Promise<{ held: string[]; limited: string[] }> {
  const { rows } = await sql<{ name: string; held: boolean }>`
    select q.name, q.paused or (q.concurrency is not null
        and (select count(*) from tasks t where t.queue = q.name and t.status = 'running') >= q.concurrency) as held
    from queues q where q.name = any(${queues}::text[]) and (q.paused or q.concurrency is not null)
  `.execute(db);
  return { held: rows.filter((r) => r.held).map((r) => r.name), limited: rows.map((r) => r.name) };
}

/** How many of a queue's first waiting tasks (in creation order) the oldest-waiting probe reads. */
const OLDEST_WAITING_WINDOW = 100;

/**
 * For each of `queues`, how many seconds its longest-waiting due task has waited (since it became
 * due: created, or its run_at if later, as a delay or a retry's backoff sets it), 0 when none is
 * due, for the metrics. Reads at most the first OLDEST_WAITING_WINDOW waiting tasks of each queue
 * in id order, from tasks_waiting_queue_idx: never a scan of the queue. Exact unless all of those
 * are delayed, since a task created later became due later than the first one not delayed.
 * Unlike the counts, this reads `tasks`: while something holds a lock on it that a read waits
 * for (a migration, VACUUM FULL), it gives up after OLDEST_WAITING_LOCK_TIMEOUT and returns
 * undefined, so a scrape answers without the ages instead of hanging behind the lock.
 */
export async function oldestWaitingAges(db: Kysely<Database>, queues: string[]): Promise<Map<string, number> | undefined> {
  if (queues.length === 0) return new Map();
  try {
    return await db.transaction().execute(async (trx) => {
      await sql`set local lock_timeout = ${sql.lit(OLDEST_WAITING_LOCK_TIMEOUT)}`.execute(trx);
      const { rows } = await oldestWaitingAgesQuery(queues).execute(trx);
      return new Map(rows.map((r) => [r.queue, Math.max(0, r.age ?? 0)]));
    });
  } catch (err) {
    if ((err as { code?: string }).code === LOCK_NOT_AVAILABLE) return undefined;
    throw err;
  }
}

/** How long the oldest-waiting probe waits for a lock on tasks before a scrape goes without it. */
const OLDEST_WAITING_LOCK_TIMEOUT = "200ms";

/** SQLSTATE lock_not_available: lock_timeout expired. */
const LOCK_NOT_AVAILABLE = "55P03";

/** oldestWaitingAges' statement (exported for its query-plan test). */
export function oldestWaitingAgesQuery(queues: string[]) {
  return sql<{ queue: string; age: number | null }>`
    select q.queue, (
      select extract(epoch from now() - min(due) filter (where due <= now())) from (
        select greatest(t.created_at, t.run_at) as due from tasks t
        where t.queue = q.queue and t.status in ('queued', 'retrying')
        order by t.id limit ${OLDEST_WAITING_WINDOW}
      ) head
    )::float8 as age
    from unnest(${queues}::text[]) as q(queue)
  `;
}
