import { sql, type Kysely } from "kysely";
import { QUEUE_CHANNEL } from "./channels.js";
import { rateHoldReason } from "./queues.js";
import type { Database } from "./schema.js";

/** A named rate limit (migration 0031): `rate` units per `periodMs`, at most `burst` at once. */
export interface RateLimit {
  name: string;
  rate: number;
  periodMs: number;
  burst: number;
  /** One bucket per task key. */
  perKey: boolean;
  /** The scope: exactly one of queue and taskType. */
  queue: string | null;
  taskType: string | null;
}

/** A limit as `limit list`, the dashboard and /metrics show it. */
export interface RateLimitView extends RateLimit {
  /** Units in the bucket now; for a limit per key, in its emptiest key's bucket (burst when no key has one). */
  tokens: number;
  /** Buckets of the limit (keys seen, for a limit per key). */
  buckets: number;
  /** Tasks of its scope QUEUED or RETRYING. */
  waiting: number;
}

interface LimitRow {
  name: string;
  rate: number;
  period_ms: number;
  burst: number;
  per_key: boolean;
  queue: string | null;
  task_type: string | null;
}

const fromRow = (r: LimitRow): RateLimit => ({ name: r.name, rate: r.rate, periodMs: r.period_ms, burst: r.burst, perKey: r.per_key, queue: r.queue, taskType: r.task_type });

/**
 * Creates or replaces limit `l` (its bucket state is kept, clamped to the new burst). Returns
 * undefined when another limit already has its scope (one limit per queue, one per type).
 */
export async function setRateLimit(db: Kysely<Database>, l: RateLimit): Promise<RateLimit | undefined> {
  const { rows: clash } = await sql<{ name: string }>`
    select name from rate_limits where name <> ${l.name} and (queue = ${l.queue}::text or task_type = ${l.taskType}::text)`.execute(db);
  if (clash.length > 0) return undefined;
  const { rows } = await sql<LimitRow>`
    insert into rate_limits (name, rate, period_ms, burst, per_key, queue, task_type)
    values (${l.name}, ${l.rate}, ${l.periodMs}, ${l.burst}, ${l.perKey}, ${l.queue}, ${l.taskType})
    on conflict (name) do update set rate = excluded.rate, period_ms = excluded.period_ms, burst = excluded.burst,
      per_key = excluded.per_key, queue = excluded.queue, task_type = excluded.task_type, updated_at = now()
    returning *`.execute(db);
  await sql`update rate_limit_buckets set tokens = least(tokens, ${l.burst}) where limit_name = ${l.name}`.execute(db);
  // Workers read their limits again at once (queue-gate.ts), as on a queue's change; sent at commit.
  await sql`select pg_notify(${QUEUE_CHANNEL}, ${l.name})`.execute(db);
  return fromRow(rows[0]!);
}

/** Deletes limit `name` and its buckets; whether it existed. */
export async function deleteRateLimit(db: Kysely<Database>, name: string): Promise<boolean> {
  const { rows } = await sql<{ name: string }>`delete from rate_limits where name = ${name} returning name`.execute(db);
  if (rows.length > 0) await sql`select pg_notify(${QUEUE_CHANNEL}, ${name})`.execute(db);
  return rows.length > 0;
}

/**
 * Every limit with its use now, by name. Reads no task row: the waiting tasks come from the
 * maintained counts (task_counts and its deltas, by queue, type and status), the tokens from the
 * buckets (task_rate_peek, no lock), so /metrics can read it at every scrape.
 */
export async function listRateLimits(db: Kysely<Database>): Promise<RateLimitView[]> {
  const { rows } = await sql<LimitRow & { tokens: number; buckets: string; waiting: string }>`
    with waiting as (
      select queue, type, sum(n) as n from (
        select queue, type, count as n from task_counts where status in ('queued', 'retrying')
        union all
        select queue, type, delta from task_count_deltas where status in ('queued', 'retrying')
      ) c group by queue, type
    )
    select l.*,
      case when l.per_key
        then coalesce((select min(p.tokens) from rate_limit_buckets b cross join lateral task_rate_peek(l.name, b.key) p where b.limit_name = l.name), l.burst)
        else (select p.tokens from task_rate_peek(l.name, null) p) end as tokens,
      (select count(*) from rate_limit_buckets b where b.limit_name = l.name) as buckets,
      (select coalesce(sum(w.n), 0) from waiting w
        where w.queue = l.queue or (w.type = l.task_type and not exists (select 1 from rate_limits o where o.queue = w.queue))) as waiting
    from rate_limits l order by l.name`.execute(db);
  return rows.map((r) => ({ ...fromRow(r), tokens: Number(r.tokens), buckets: Number(r.buckets), waiting: Number(r.waiting) }));
}

/**
 * The limit each (queue, type) pair is under (its queue's, else its type's), by "queue\u001ftype":
 * the create's check that a task's units fit its burst. Pairs under no limit are absent.
 */
export async function limitsOf(db: Kysely<Database>, pairs: { queue: string; type: string }[]): Promise<Map<string, { name: string; burst: number }>> {
  const out = new Map<string, { name: string; burst: number }>();
  if (pairs.length === 0) return out;
  const { rows } = await sql<{ queue: string; type: string; name: string; burst: number }>`
    select p.queue, p.type, l.name, l.burst from unnest(${pairs.map((p) => p.queue)}::text[], ${pairs.map((p) => p.type)}::text[]) as p(queue, type)
    join rate_limits l on l.name = task_rate_limit_of(p.queue, p.type)`.execute(db);
  for (const r of rows) out.set(`${r.queue}\u001f${r.type}`, { name: r.name, burst: Number(r.burst) });
  return out;
}

/** Whether `queue` has a rate limit of its own with a bucket per key (GetQueue then shows each key's use). */
export async function hasPerKeyRateLimit(db: Kysely<Database>, queue: string): Promise<boolean> {
  const { rows } = await sql`select 1 from rate_limits where queue = ${queue} and per_key`.execute(db);
  return rows.length > 0;
}

/** The limits whose scope is one of `queues` or `types` (a worker process's claim asks for them), by name. */
export async function rateLimitsOf(db: Kysely<Database>, queues: string[], types: string[]): Promise<RateLimit[]> {
  const { rows } = await sql<LimitRow>`
    select * from rate_limits where queue = any(${queues}::text[]) or task_type = any(${types}::text[]) order by name`.execute(db);
  return rows.map(fromRow);
}

/**
 * Ms until limit `name` holds the units of one of its waiting tasks this process may start, where
 * that is later than now: the soonest over their buckets (one per key for a limit per key) and the
 * units they need. A task needing more units than another waits at the head of its turn (the claim
 * does not pass it), so the claim may be refused while a smaller task's units are there: the wake
 * is then at the next need met, not at once. Undefined when none waits, or every need is met now
 * (then what holds them is a queue's or key's slot, and an attempt ending wakes the claim).
 */
export async function msToNextUnit(db: Kysely<Database>, name: string, queues: string[], types: string[]): Promise<number | undefined> {
  const { rows } = await sql<{ ms: number | null }>`
    select min(p.next_unit_ms) filter (where p.next_unit_ms > 0) as ms from (
      select distinct case when l.per_key then coalesce(t.key, '') else '' end as k, l.name, t.units
      from rate_limits l join tasks t on t.status in ('queued', 'retrying') and t.run_at <= now()
        and t.queue = any(${queues}::text[]) and t.type = any(${types}::text[])
        and task_rate_limit_of(t.queue, t.type) = l.name
      where l.name = ${name}) w
    cross join lateral task_rate_peek(w.name, w.k, w.units) p`.execute(db);
  const ms = rows[0]?.ms;
  return ms === null || ms === undefined ? undefined : Number(ms);
}

/**
 * Why a waiting task of (queue, type, key) needing `units` waits on its rate limit ("rate limit
 * smtp: next unit in 1.2 s", "rate limit smtp: 5 units in 2.0 s", "rate limit smtp: needs 50
 * units, burst 20"); undefined when its units are there.
 */
export async function rateWaitReason(db: Kysely<Database>, queue: string, type: string, key: string | null, units = 1): Promise<string | undefined> {
  const { rows } = await sql<{ name: string; burst: number; next_unit_ms: number | null }>`
    select l.name, l.burst, p.next_unit_ms from rate_limits l cross join lateral task_rate_peek(l.name, ${key}::text, ${units}::int) p
    where l.name = task_rate_limit_of(${queue}::text, ${type}::text)`.execute(db);
  const r = rows[0];
  if (!r) return undefined;
  if (r.next_unit_ms === null) return `rate limit ${r.name}: needs ${units} units, burst ${r.burst}`;
  return rateHoldReason(r.name, r.next_unit_ms, units);
}
