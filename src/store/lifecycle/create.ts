import { sql, type Kysely } from "kysely";
import type { Database } from "../schema.js";
import { transition } from "./statement.js";

/** A validated task to insert. */
export interface NewTask {
  name: string;
  type: string;
  parameters: Record<string, unknown>;
  priority: number;
  maxAttempts: number;
  timeoutMs: number;
  /** null: now. */
  runAt: Date | null;
  /** The queue to wait in; undefined: 'default'. */
  queue?: string;
  idempotencyKey: string | null;
  requestHash: string | null;
  /** Set for a schedule's tick: (scheduleId, scheduledAt) is unique, so a tick's task is inserted once. */
  scheduleId?: string | null;
  scheduledAt?: Date | null;
  /** The task's own retry policy; undefined/null: the workers' configured one. */
  backoff?: { baseMs: number; maxMs: number } | null;
  /** The W3C traceparent of the create request or schedule tick (src/tracing.ts); null: none. */
  traceparent?: string | null;
  /** Expire the task if it has not started this long after it is due; undefined/null: the queue's default, or never. */
  expireAfterMs?: number | null;
  /** What the task competes for in its queue (per-key limits, turns); null/undefined: unkeyed. */
  key?: string | null;
  /**
   * Debounce/dedupe (needs `key`): answered by an existing unique task of its queue and key while
   * that one is unfinished, or created less than `windowMs` ago; null/undefined: not unique.
   * The caller checks with findUniqueHolders first, in the same transaction.
   */
  uniqueWhile?: UniqueWhile | null;
  /** The labels a worker must have to claim it (sorted "key=value" pairs, src/labels.ts); null/undefined/empty: any worker. */
  labels?: string[] | null;
  /** Units of its rate limit the task takes when it starts (1..1,000,000); undefined: 1. */
  units?: number;
}

/** How long a unique task answers later creates of its queue and key. */
export type UniqueWhile = { unfinished: true } | { windowMs: number };

/** Turns a key of weight 1 steps per task; a key of weight w steps round(TURN_UNIT / w) (migration 0033). */
export const TURN_UNIT = 1000;

/**
 * The `turned` CTE: `input` with each keyed task's key_turn, its place in its key's round-robin
 * (start-time fair queueing, weighted): within its queue and priority, a key's tasks take turns
 * after its last waiting one, each round(TURN_UNIT / weight) turns after the one before (the
 * weight from queues.key_weights, 1 when the key is not named there), and a key with none waiting
 * starts at the queue's clock, the turn of the first task in claim order. The keyed claim takes
 * tasks in turn order, so when key A has 20,000 tasks waiting (turns c, c+1000, ...) and key B adds
 * 20, B's get turns c, c+1000, ... and start among A's next 20, not after all of them; with weight 3,
 * A's tasks are 333 turns apart and A starts 3 for each of B's. The level is the effective priority
 * (priority + age_boost), the claim's order. Two probes of partial indexes per key and statement,
 * and one of queues for the weight; unkeyed tasks (key_turn null) cost nothing. Concurrent creates
 * may share a turn: ties go by id, so fairness is approximate under such races, never violated by
 * more than the racing batch.
 */
function keyTurns() {
  const waiting = sql`h.key is not null and h.status in ('queued', 'retrying') and h.queue = i.queue and (h.priority + h.age_boost) = i.priority`;
  return [
    sql`weighted as (
      select x.*, case when x.key is not null then greatest(1, round(${sql.lit(TURN_UNIT)}::numeric
        / coalesce((select (q.key_weights ->> x.key)::int from queues q where q.name = x.queue), 1)))::bigint end as key_step
      from input x)`,
    sql`turned as (
      select i.*, case when i.key is not null then greatest(
          coalesce((select h.key_turn from tasks h where ${waiting} order by (h.priority + h.age_boost) desc, h.key_turn limit 1), 0),
          coalesce((select h.key_turn + i.key_step from tasks h where ${waiting} and h.key = i.key order by (h.priority + h.age_boost) desc, h.key_turn desc limit 1), 0)
        ) + (row_number() over (partition by i.queue, i.key, i.priority order by i.ord) - 1) * i.key_step end as key_turn
      from weighted i)`,
  ];
}

/**
 * Event `create` (-> QUEUED): inserts tasks, their "created" history rows and their
 * graphile-worker jobs in ONE statement, so a task never exists without its job nor a job without
 * its task, and a batch costs one round trip; a job due later wakes the workers when it is due.
 * Tasks whose idempotency key, or schedule tick, already exists are not inserted (the caller
 * resolves them). Returns the statement; its rows are the inserted tasks in input order.
 */
export function createTasks(tasks: NewTask[]) {
  const input = JSON.stringify(
    tasks.map((t, ord) => ({
      ord,
      name: t.name,
      type: t.type,
      parameters: t.parameters,
      priority: t.priority,
      max_attempts: t.maxAttempts,
      timeout_ms: t.timeoutMs,
      run_at: t.runAt?.toISOString() ?? null,
      queue: t.queue ?? "default",
      idempotency_key: t.idempotencyKey,
      request_hash: t.requestHash,
      schedule_id: t.scheduleId ?? null,
      scheduled_at: t.scheduledAt?.toISOString() ?? null,
      backoff_base_ms: t.backoff?.baseMs ?? null,
      backoff_max_ms: t.backoff?.maxMs ?? null,
      traceparent: t.traceparent ?? null,
      expire_after_ms: t.expireAfterMs ?? null,
      key: t.key ?? null,
      key_unique: t.uniqueWhile != null,
      labels: t.labels && t.labels.length > 0 ? t.labels : null,
      units: t.units ?? 1,
    })),
  );
  return transition({
    with: [
      sql`input as (
        select * from jsonb_to_recordset(${input}::jsonb) as x(
          ord int, name text, type text, parameters jsonb, priority int, max_attempts int,
          timeout_ms int, run_at timestamptz, queue text, idempotency_key text, request_hash text,
          schedule_id bigint, scheduled_at timestamptz, backoff_base_ms int, backoff_max_ms int, traceparent text,
          expire_after_ms int, key text, key_unique boolean, labels text[], units int))`,
      ...keyTurns(),
      // Each label set a task requires, kept once: claimers find the labeled job identifiers they may
      // read by it (store/jobs.ts pickJobs). Data-modifying, so it runs without being read.
      sql`label_sets as (
        insert into task_label_sets (id, labels)
        select distinct task_label_set_id(labels), labels from input where labels is not null
        on conflict do nothing)`,
      // A queue's default expiry, for tasks created without one.
      sql`timed as (
        select turned.*, coalesce(turned.expire_after_ms, (select q.expire_after_ms from queues q where q.name = turned.queue)) as expire_ms
        from turned)`,
    ],
    change: {
      // status is the column's default, 'queued'.
      // The deadline counts from when the task is due: its run_at, or now.
      insert: sql`insert into tasks (name, type, parameters, priority, max_attempts, timeout_ms, run_at, queue, idempotency_key, request_hash, schedule_id, scheduled_at, backoff_base_ms, backoff_max_ms, traceparent, expire_after_ms, expires_at, key, key_turn, key_unique, labels, units)
        select name, type, parameters, priority, max_attempts, timeout_ms, coalesce(run_at, now()), queue, idempotency_key, request_hash, schedule_id, scheduled_at, backoff_base_ms, backoff_max_ms, traceparent,
          expire_ms, greatest(coalesce(run_at, now()), now()) + expire_ms * interval '1 millisecond', key, key_turn, key_unique, labels, units
        from timed order by ord
        /* No conflict target: both the idempotency key and the schedule tick key mean "already there". */
        on conflict do nothing`,
    },
    details: sql`case
      when run_at > now() then 'created, scheduled for ' || to_char(run_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
      else 'created' end`,
    enqueue: true,
  });
}

/**
 * For each task (in order): the id of the existing task that answers its unique_while, or null
 * (not unique, or none found: it may be created). Locks each (queue, key) it checks until the
 * transaction ends, so `trx` must be the transaction that then inserts the tasks: a concurrent
 * create of the same key waits for it and then sees what it inserted (migration 0030, the hazard
 * on task_unique_holders). Tasks of the same key within one call are the caller's to pair up.
 */
export async function findUniqueHolders(trx: Kysely<Database>, tasks: NewTask[]): Promise<(string | null)[]> {
  const unique = tasks.flatMap((t, i) => (t.uniqueWhile != null && t.key != null ? [{ t, i }] : []));
  const holders: (string | null)[] = tasks.map(() => null);
  if (unique.length === 0) return holders;
  const { rows } = await sql<{ ord: number; holder: string | null }>`select ord, holder from task_unique_holders(
      ${unique.map(({ t }) => t.queue ?? "default")}::text[], ${unique.map(({ t }) => t.key)}::text[],
      ${unique.map(({ t }) => ("windowMs" in t.uniqueWhile! ? t.uniqueWhile.windowMs : null))}::bigint[])`.execute(trx);
  for (const { ord, holder } of rows) holders[unique[ord]!.i] = holder;
  return holders;
}
