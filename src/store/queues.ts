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
  keyTemplate: string | null;
  /** Most RUNNING per key; null: unlimited. */
  keyConcurrency: number | null;
  /** Limits of named keys, overriding keyConcurrency. */
  keyLimits: Record<string, number>;
  /** Weights of named keys in the turns (a key not named weighs 1). */
  keyWeights: Record<string, number>;
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
    key_template: string | null;
    key_concurrency: number | null;
    key_limits: Record<string, number> | null;
    key_weights: Record<string, number> | null;
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
    select names.name, q.paused, q.concurrency, q.expire_after_ms, q.updated_at, q.key_template, q.key_concurrency, q.key_limits, q.key_weights,
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
    keyTemplate: r.key_template,
    keyConcurrency: r.key_concurrency,
    keyLimits: r.key_limits ?? {},
    keyWeights: r.key_weights ?? {},
  }));
}

/** One key's use of its limit (GetQueue). */
export interface KeyUse {
  key: string;
  running: number;
  waiting: number;
  /** null: unlimited. */
  limit: number | null;
  /** Why its waiting tasks wait, when a pause or a limit holds them (waitReason's words); undefined otherwise. */
  waitReason: string | undefined;
}

/** Most keys keyUse reports. */
export const KEY_USE_LIMIT = 100;

/**
 * The keys of `queue` with tasks RUNNING (the busiest first) and then those with tasks waiting, at
 * most KEY_USE_LIMIT, each with its limit and what holds its waiting tasks: the queue (paused, at
 * its limit), the key at its limit, or the queue's rate limit with no unit for the key. Reads the
 * partial indexes of keyed tasks, the queue's RUNNING count when it has a limit, and one bucket per
 * key (task_rate_peek, no lock) when the queue has a rate limit.
 */
export async function keyUse(db: Kysely<Database>, queue: string): Promise<KeyUse[]> {
  const { rows } = await sql<{
    key: string;
    running: string;
    waiting: string;
    lim: number | null;
    paused: boolean | null;
    concurrency: number | null;
    queue_running: string;
    rate_limit: string | null;
    next_unit_ms: number | null;
  }>`
    with use as (
      select key, count(*) filter (where status = 'running') as running, count(*) filter (where status <> 'running') as waiting
      from tasks where queue = ${queue} and key is not null and status in ('running', 'queued', 'retrying')
      group by key
    ),
    shown as (
      select use.key, use.running, use.waiting, coalesce((q.key_limits ->> use.key)::int, q.key_concurrency) as lim, q.paused, q.concurrency
      from use left join queues q on q.name = ${queue}
      order by use.running desc, use.waiting desc, use.key limit ${KEY_USE_LIMIT}
    ),
    limited as (select name from rate_limits where queue = ${queue})
    select shown.*,
      case when (select concurrency from queues where name = ${queue}) is not null
        then (select count(*) from tasks t where t.queue = ${queue} and t.status = 'running') else 0 end as queue_running,
      (select name from limited) as rate_limit,
      (select p.next_unit_ms from limited l cross join lateral task_rate_peek(l.name, shown.key) p) as next_unit_ms
    from shown order by shown.running desc, shown.waiting desc, shown.key
  `.execute(db);
  return rows.map((r) => {
    const waiting = Number(r.waiting);
    const held =
      holdReason(queue, { paused: r.paused ?? false, concurrency: r.concurrency, running: Number(r.queue_running) }, r.key, { limit: r.lim, running: Number(r.running) }) ??
      (r.rate_limit !== null && r.next_unit_ms !== null ? rateHoldReason(r.rate_limit, r.next_unit_ms) : undefined);
    return { key: r.key, running: Number(r.running), waiting, limit: r.lim, waitReason: waiting > 0 ? held : undefined };
  });
}

/**
 * What holds a waiting task of `queue` (with `key`) by its queue's settings and its key's limit,
 * in the words GetTask's wait_reason and GetQueue's key_use use; undefined: nothing of these.
 */
function holdReason(
  queue: string,
  q: { paused: boolean; concurrency: number | null; running: number },
  key: string | null,
  k: { limit: number | null; running: number },
): string | undefined {
  if (q.paused) return `queue ${queue} paused`;
  if (q.concurrency !== null && q.running >= q.concurrency) return `queue ${queue} at its limit ${q.concurrency}`;
  if (key !== null && k.limit !== null && k.running >= k.limit) return `key ${key} at its limit ${k.limit}`;
  return undefined;
}

/**
 * "rate limit smtp: next unit in 1.2 s" ("…: 5 units in 1.2 s" for a task of several units), when
 * the bucket does not hold them yet; undefined when it does.
 */
export function rateHoldReason(limit: string, nextUnitMs: number, units = 1): string | undefined {
  if (nextUnitMs <= 0) return undefined;
  const when = `in ${(Math.ceil(nextUnitMs / 100) / 10).toFixed(1)} s`;
  return units === 1 ? `rate limit ${limit}: next unit ${when}` : `rate limit ${limit}: ${units} units ${when}`;
}

/** The key templates of those of `queues` that have one, by queue (the create path derives keys with them). */
export async function keyTemplates(db: Kysely<Database>, queues: string[]): Promise<Map<string, string>> {
  if (queues.length === 0) return new Map();
  const { rows } = await sql<{ name: string; key_template: string }>`
    select name, key_template from queues where name = any(${queues}::text[]) and key_template is not null
  `.execute(db);
  return new Map(rows.map((r) => [r.name, r.key_template]));
}

/**
 * Why a waiting task of `queue` (with `key`) does not run yet, if its queue or key holds it: the
 * queue is paused, at its limit, or the key at its limit (GetTask's wait_reason); undefined otherwise.
 */
export async function waitReason(db: Kysely<Database>, queue: string, key: string | null): Promise<string | undefined> {
  const { rows } = await sql<{ paused: boolean; concurrency: number | null; running: string; key_limit: number | null; key_running: string }>`
    select q.paused, q.concurrency,
      case when q.concurrency is not null then (select count(*) from tasks t where t.queue = q.name and t.status = 'running') else 0 end as running,
      coalesce((q.key_limits ->> ${key}::text)::int, q.key_concurrency) as key_limit,
      case when ${key}::text is not null then (select count(*) from tasks t where t.queue = q.name and t.key = ${key}::text and t.key is not null and t.status = 'running') else 0 end as key_running
    from queues q where q.name = ${queue}
  `.execute(db);
  const q = rows[0];
  if (!q) return undefined;
  return holdReason(queue, { paused: q.paused, concurrency: q.concurrency, running: Number(q.running) }, key, { limit: q.key_limit, running: Number(q.key_running) });
}

/** A change to a queue's settings; undefined fields stay as they are. */
export interface QueueChange {
  /** null: unlimited. */
  concurrency?: number | null;
  paused?: boolean;
  /** null: no default expiry. */
  expireAfterMs?: number | null;
  /** null: none. */
  keyTemplate?: string | null;
  /** null: unlimited. */
  keyConcurrency?: number | null;
  /** Replaces the whole map. */
  keyLimits?: Record<string, number>;
  /** Replaces the whole map; applies to tasks created after the change. */
  keyWeights?: Record<string, number>;
}

/**
 * Applies a settings change in one statement (creating the queue's row if needed) and announces it
 * on QUEUE_CHANNEL, so workers stop fetching a paused queue's jobs, or fetch a resumed one's, at once.
 */
export async function updateQueue(db: Kysely<Database>, name: string, change: QueueChange): Promise<void> {
  const setConcurrency = change.concurrency !== undefined;
  const setPaused = change.paused !== undefined;
  const setExpiry = change.expireAfterMs !== undefined;
  const setTemplate = change.keyTemplate !== undefined;
  const setKeyConcurrency = change.keyConcurrency !== undefined;
  const setKeyLimits = change.keyLimits !== undefined;
  const setKeyWeights = change.keyWeights !== undefined;
  await sql`
    with changed as (
      insert into queues (name, concurrency, paused, expire_after_ms, key_template, key_concurrency, key_limits, key_weights)
      values (${name}, ${change.concurrency ?? null}::int, coalesce(${change.paused ?? null}::boolean, false), ${change.expireAfterMs ?? null}::int,
        ${change.keyTemplate ?? null}::text, ${change.keyConcurrency ?? null}::int, ${JSON.stringify(change.keyLimits ?? {})}::jsonb,
        ${JSON.stringify(change.keyWeights ?? {})}::jsonb)
      on conflict (name) do update set
        concurrency = case when ${setConcurrency}::boolean then excluded.concurrency else queues.concurrency end,
        paused = case when ${setPaused}::boolean then excluded.paused else queues.paused end,
        expire_after_ms = case when ${setExpiry}::boolean then excluded.expire_after_ms else queues.expire_after_ms end,
        key_template = case when ${setTemplate}::boolean then excluded.key_template else queues.key_template end,
        key_concurrency = case when ${setKeyConcurrency}::boolean then excluded.key_concurrency else queues.key_concurrency end,
        key_limits = case when ${setKeyLimits}::boolean then excluded.key_limits else queues.key_limits end,
        key_weights = case when ${setKeyWeights}::boolean then excluded.key_weights else queues.key_weights end,
        updated_at = now()
      returning name
    )
    select pg_notify(${QUEUE_CHANNEL}, name) from changed
  `.execute(db);
}

/**
 * Of `queues`, those that may not start an attempt now: paused, or limited with their RUNNING tasks
 * at the limit. A worker forbids their jobs' flags so it does not fetch them (src/worker/queue-gate.ts).
 * `keyLimited`: those (not paused nor limited) with a limit per key, whose keyed tasks the worker
 * claims queue by queue (claimKeyedAttempts). Advisory only: the claim's gates (task_queue_admits,
 * task_key_slots) are what guarantee the limits.
 */
export async function heldQueues(db: Kysely<Database>, queues: string[]): Promise<{ held: string[]; limited: string[]; keyLimited: string[] }> {
  const { rows } = await sql<{ name: string; held: boolean; limited: boolean }>`
    select q.name, q.paused or q.concurrency is not null as limited, q.paused or (q.concurrency is not null
        and (select count(*) from tasks t where t.queue = q.name and t.status = 'running') >= q.concurrency) as held
    from queues q where q.name = any(${queues}::text[])
      and (q.paused or q.concurrency is not null or q.key_concurrency is not null or q.key_limits <> '{}'::jsonb)
  `.execute(db);
  return {
    held: rows.filter((r) => r.held).map((r) => r.name),
    limited: rows.filter((r) => r.limited).map((r) => r.name),
    keyLimited: rows.filter((r) => !r.limited).map((r) => r.name),
  };
}

/** Why waiting tasks are held, as the metrics count them (waitReason says the same of one task). */
export type WaitReason = "queue_paused" | "queue_limit" | "key_limit";

/**
 * Waiting tasks (QUEUED, RETRYING) held by a limit or a pause, by queue and reason: every waiting
 * task of a paused queue, or of one whose RUNNING tasks reach its limit; and the waiting tasks of
 * keys at their limit. Reads only queues with such settings: their counts of RUNNING tasks and,
 * for a key-limited queue, its waiting keyed tasks grouped by key (the partial indexes of keyed
 * tasks; a scan of that queue's keyed backlog, so its cost grows with it).
 */
export async function waitsByReason(db: Kysely<Database>): Promise<{ queue: string; reason: WaitReason; waiting: number }[]> {
  // Most installs have no such queue: then nothing reads tasks, so a scrape never waits on its locks.
  const { rows: limited } = await sql<{ any: boolean }>`
    select exists (select 1 from queues where paused or concurrency is not null or key_concurrency is not null or key_limits <> '{}'::jsonb) as any`.execute(db);
  if (!limited[0]?.any) return [];
  // This reads tasks: behind a lock a read waits for (a migration, VACUUM FULL) it gives up, as
  // oldestWaitingAges does, and the gauge is left out of that scrape.
  return (await behindLockTimeout(db, waitsByReasonIn)) ?? [];
}

async function waitsByReasonIn(db: Kysely<Database>): Promise<{ queue: string; reason: WaitReason; waiting: number }[]> {
  const { rows } = await sql<{ queue: string; reason: WaitReason; waiting: string }>`
    with held as (
      select q.name as queue, case when q.paused then 'queue_paused' else 'queue_limit' end as reason
      from queues q
      where q.paused or (q.concurrency is not null and (select count(*) from tasks t where t.queue = q.name and t.status = 'running') >= q.concurrency)
    ),
    keyed as (
      select t.queue, t.key, count(*) as waiting from tasks t join queues q on q.name = t.queue
      where t.key is not null and t.status in ('queued', 'retrying') and (q.key_concurrency is not null or q.key_limits <> '{}'::jsonb)
        and t.queue not in (select queue from held)
      group by t.queue, t.key
    )
    select h.queue, h.reason, (select count(*) from tasks t where t.queue = h.queue and t.status in ('queued', 'retrying')) as waiting from held h
    union all
    select k.queue, 'key_limit', sum(k.waiting) from keyed k join queues q on q.name = k.queue
    where coalesce((q.key_limits ->> k.key)::int, q.key_concurrency)
      <= (select count(*) from tasks r where r.queue = k.queue and r.key = k.key and r.key is not null and r.status = 'running')
    group by k.queue
  `.execute(db);
  return rows.map((r) => ({ queue: r.queue, reason: r.reason, waiting: Number(r.waiting) }));
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
 * for (a migration, VACUUM FULL), it gives up after SCRAPE_LOCK_TIMEOUT and returns
 * undefined, so a scrape answers without the ages instead of hanging behind the lock.
 */
export async function oldestWaitingAges(db: Kysely<Database>, queues: string[]): Promise<Map<string, number> | undefined> {
  if (queues.length === 0) return new Map();
  return behindLockTimeout(db, async (trx) => {
    const { rows } = await oldestWaitingAgesQuery(queues).execute(trx);
    return new Map(rows.map((r) => [r.queue, Math.max(0, r.age ?? 0)]));
  });
}

/** How long a scrape's read waits for a lock on what it reads before the scrape goes without it. */
const SCRAPE_LOCK_TIMEOUT = "200ms";

/**
 * Runs `read` in a transaction whose lock_timeout is SCRAPE_LOCK_TIMEOUT: undefined if it had to
 * wait longer for a lock (a migration, VACUUM FULL), so a /metrics scrape answers without it
 * instead of hanging behind the lock.
 */
export async function behindLockTimeout<T>(db: Kysely<Database>, read: (trx: Kysely<Database>) => Promise<T>): Promise<T | undefined> {
  try {
    return await db.transaction().execute(async (trx) => {
      await sql`set local lock_timeout = ${sql.lit(SCRAPE_LOCK_TIMEOUT)}`.execute(trx);
      return read(trx);
    });
  } catch (err) {
    if ((err as { code?: string }).code === LOCK_NOT_AVAILABLE) return undefined;
    throw err;
  }
}

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
