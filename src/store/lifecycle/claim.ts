import { sql, type RawBuilder } from "kysely";
import { queryPrepared, type Db } from "../db.js";
import { lockJobsOfTasks, pickJobs } from "../jobs.js";
import type { TaskRow } from "../schema.js";
import { transition } from "./statement.js";

/**
 * Event `claim` (QUEUED/RETRYING -> RUNNING), in each of its statements: one task by id, the batch
 * of unkeyed jobs, the keyed tasks by their keys' turns, and a rate-limited task taking its unit.
 * They share one guard (waitingFor) and one SET list and history row; what follows the claim is in
 * attempt.ts.
 */

/** The claim's guard over tasks `t` for attempt `attempt`: waiting for exactly it, no cancel pending. */
function waitingFor(t: string, attempt: RawBuilder<unknown>): RawBuilder<boolean> {
  const col = (c: string) => sql.ref(`${t}.${c}`);
  // Past its deadline a task is never started: the expiry part records it EXPIRED (control.ts expireOverdue).
  return sql<boolean>`(${col("status")} in ('queued', 'retrying') and ${col("attempts")} = ${attempt} - 1 and ${col("cancel_requested_at")} is null
    and (${col("expires_at")} is null or ${col("expires_at")} > now()))`;
}

/**
 * Routing by labels (migration 0032): the claim's check that tasks `t` may run on a process with
 * labels `pairs` (sorted "key=value"): the task requires no labels, or only labels among them. For
 * an unlabeled task it is one null test; every claim statement applies it (claimAttempt with the
 * labels on the claimer's worker row).
 */
function labelsAllow(t: string, pairs: RawBuilder<unknown>): RawBuilder<boolean> {
  const labels = sql.ref(`${t}.labels`);
  return sql<boolean>`(${labels} is null or ${labels} <@ ${pairs})`;
}

/** A process's labels as a SQL value (none: an empty array). */
const pairsOf = (labels: string[] | undefined) => sql`${labels ?? []}::text[]`;

/** The claim's SET list: the attempt starts, owned by `workerId`. */
const claimSet = (workerId: string) => sql`status = 'running', attempts = attempts + 1, worker_id = ${workerId}, heartbeat_at = now(), started_at = now()`;

/** The claim's history row. */
const claimDetails = (workerId: string) => sql`'attempt ' || attempts || ' started on ' || ${workerId}`;

/**
 * Event `claim` of one task known by id (tests that race a worker, tools): starts attempt
 * `attempt` (QUEUED/RETRYING -> RUNNING, attempts incremented, owner and heartbeat set, history
 * row written, its pending job removed) in one guarded statement. Returns undefined when the task
 * is not waiting for exactly this attempt, a cancel is pending, or its queue's gate refuses it:
 * task_queue_admits(queue) (migration 0012) says no when the queue is paused, or has a
 * concurrency limit that its RUNNING tasks already reach; for a limited queue it locks the
 * queue's row, so claims racing for its last slot go one after the other; task_key_admits does the
 * same for the task's key (migration 0026), task_rate_take takes a unit of its rate limit (0031).
 * A task that requires labels is claimed only if the claimer's worker row has them (0032).
 * Workers claim through claimNextAttempts.
 */
export async function claimAttempt(db: Db, taskId: string, attempt: number, workerId: string): Promise<TaskRow | undefined> {
  const rows = await queryPrepared(db, "task_claim_attempt", transition({
    change: {
      set: claimSet(workerId),
      // The queue gate comes last: it may lock the queue's row, which only a claimable task should do.
      where: sql`id = ${taskId} and ${waitingFor("tasks", sql`${attempt}::int`)}
        and ${labelsAllow("tasks", sql`coalesce((select w.labels from workers w where w.id = ${workerId}), '{}')`)}
        and task_queue_admits(queue) and task_key_admits(queue, key)
        and task_rate_take(task_rate_limit_of(queue, type), key, units)`,
    },
    details: claimDetails(workerId),
    removeJob: true,
  }));
  return rows[0];
}

/** What one claim statement of a worker process's fetch loop may take (claimNextAttempts). */
export interface NextAttempts {
  /** The graphile-worker task identifiers to take jobs of (store/jobs.ts runTaskIdentifier). */
  identifiers: string[];
  /** Job flags not to take (queues held or limited, src/worker/queue-gate.ts). */
  forbiddenFlags: string[];
  /** Most attempts to start (the process's free slots). */
  limit: number;
  /**
   * A queue with a concurrency limit (or paused): take at most one of its jobs, admitted by the
   * queue's gate (task_queue_admits). Without it, only tasks of queues with neither are started.
   */
  limitedQueue?: string;
  /** The process's labels (sorted "key=value" pairs); with them, the labeled jobs it may run are read too. */
  labels?: string[];
  /** The prefixes of the labeled identifiers of its queues and types (store/jobs.ts labeledRunTaskPrefix), with `labels`. */
  labeledPrefixes?: string[];
}

/**
 * Event `claim` as a worker process's fetch loop makes it (src/worker/claim-loop.ts), fetch and
 * claim in ONE statement: takes the best available run_task jobs it serves (store/jobs.ts
 * pickJobs), starts the attempt each names (QUEUED/RETRYING -> RUNNING, with its history row) and
 * deletes the job: from the claim on, the task row owns the attempt (heartbeat, lease, fencing and
 * rescue work on it; a retry gets a new job). Each row keeps claimAttempt's guards. A job whose
 * task is not waiting for its attempt (stale, a duplicate, a cancelled or paused task) is deleted
 * unused.
 *
 * The queue gate cannot hold for a batch: task_queue_admits counts a limited queue's RUNNING tasks
 * once per statement, which would let a batch overshoot the limit. So a batch refuses every task of
 * a queue that is paused or limited (in SQL, whatever the caller's view of the queues; the caller
 * forbids their flags so it does not take them at all), and such a queue is claimed one job per
 * statement with `limitedQueue`, where the gate locks the queue's row and counts. A refused job
 * stays where it was, unlocked when the statement commits.
 *
 * Priority holds without a re-check: the statement takes the best jobs the process may run at that
 * moment, and starts them at once (nothing waits in a local queue, where a job fetched earlier
 * would start before better ones that arrived after it).
 *
 * Keyed tasks (tasks.key set) are not taken here (their jobs have their own task identifier, and
 * the gate refuses them in SQL): claimKeyedAttempts takes them in their keys' turns, in a limited
 * queue one at a time through both the queue's gate and the key's.
 */
export async function claimNextAttempts(db: Db, workerId: string, next: NextAttempts): Promise<TaskRow[]> {
  if (next.limit <= 0) return [];
  // Neither takes a keyed task: claimKeyedAttempts does (with queueLimited in a limited queue).
  const gate = next.limitedQueue === undefined
    ? sql`tasks.key is null and not exists (select 1 from queues q where q.name = tasks.queue and (q.paused or q.concurrency is not null)) and ${notRateLimited}`
    : sql`tasks.queue = ${next.limitedQueue}::text and tasks.key is null and ${notRateLimited} and task_queue_admits(tasks.queue)`;
  // Every CTE reads the statement's snapshot: a task claimed below still looks waiting to `dropped`,
  // so only jobs no claim could use are dropped there (the claimed ones go with takeJob).
  const usable = sql<boolean>`exists (select 1 from tasks t where t.id = p.c_id and ${waitingFor("t", sql`p.c_attempt`)})`;
  // Labeled jobs are read only with both the labels and the prefixes to read them under; that
  // statement's SQL differs, so it has its own prepared name (the other claims bind the labels).
  const labeled = next.labels !== undefined && next.labels.length > 0 && (next.labeledPrefixes ?? []).length > 0;
  const labels = labeled ? { pairs: next.labels!, prefixes: next.labeledPrefixes! } : undefined;
  // One prepared statement per limit: the limit is a literal in it (store/jobs.ts pickJobs says why).
  const name = next.limitedQueue === undefined ? `task_claim_next_${Math.trunc(next.limit)}` : "task_claim_next_limited";
  return queryPrepared(db, `${name}${labeled ? "_l" : ""}`, transition({
    with: pickJobs({ identifiers: next.identifiers, forbiddenFlags: next.forbiddenFlags, limit: next.limitedQueue === undefined ? next.limit : 1, labels }, usable),
    change: {
      set: claimSet(workerId),
      // One job per task (duplicates of an attempt: the oldest wins; the rest are dropped as stale by the next fetch).
      from: sql`(select distinct on (c_id) * from picked where c_id is not null order by c_id, c_job) as c`,
      // The queue gate comes last: it may lock the queue's row, which only a claimable task should do.
      where: sql`tasks.id = c.c_id and ${waitingFor("tasks", sql`c.c_attempt`)} and ${labelsAllow("tasks", pairsOf(next.labels))} and ${gate}`,
    },
    details: claimDetails(workerId),
    takeJob: sql`c.c_job`,
  }));
}

/** What one keyed claim statement may take (claimKeyedAttempts). */
export interface KeyedAttempts {
  /**
   * The queues to take keyed tasks of: queues without key limits (each key takes turns), or
   * exactly one queue with key limits (keyLimited), whose keys are also held to their limits.
   */
  queues: string[];
  /** The task types this process runs. */
  types: string[];
  /** Most attempts to start (the process's free slots). */
  limit: number;
  keyLimited?: boolean;
  /**
   * With keyLimited: the queue has a concurrency limit (or is paused), so at most one task is
   * started (limit 1), admitted by the queue's gate (task_queue_admits) as well as its key's.
   */
  queueLimited?: boolean;
  /** The process's labels (sorted "key=value" pairs): a labeled task is a candidate only if they include its labels. */
  labels?: string[];
}

/** The columns of a keyed claim's candidate, from tasks `t`. */
const keyedCandidate = sql`t.id as k_id, t.queue as k_queue, t.key as k_key, t.attempts + 1 as k_attempt, t.priority + t.age_boost as k_priority, t.key_turn as k_turn`;

/** A keyed task of tasks `t` that may start now, by what the claim itself can check. */
const keyedWaiting = (types: string[], labels: string[] | undefined) =>
  sql`t.key is not null and t.status in ('queued', 'retrying') and t.run_at <= now() and t.type = any(${types}::text[]) and t.cancel_requested_at is null
    and not exists (select 1 from rate_limits l where l.queue = t.queue or l.task_type = t.type) and ${labelsAllow("t", pairsOf(labels))}`;

/**
 * The other claims' refusal of a task under a rate limit (migration 0031): such a task is started
 * only by claimRateLimitedAttempt, which takes its unit. Two probes of a table of a few rows (its
 * unique indexes on queue and on type) per task claimed.
 */
const notRateLimited = sql`not exists (select 1 from rate_limits l where l.queue = tasks.queue or l.task_type = tasks.type)`;

/**
 * Event `claim` of keyed tasks (tasks.key set, migration 0026), fetch and claim in ONE statement
 * as claimNextAttempts does, in the keys' turn order: by priority, then key_turn (the task's
 * place in its key's round-robin, given at create, see lifecycle/create.ts), then id. So within a
 * priority the keys take turns, and a key with a backlog of 20,000 does not make a key with 20
 * wait for it.
 *
 * For queues without key limits the candidates are the first tasks of each queue in that order
 * (tasks_keyed_waiting_idx): a drain costs about what the unkeyed batch costs. For a queue with
 * key limits (`keyLimited`, one queue) the candidates are the first tasks of each of its keys
 * whose RUNNING tasks are below the limit: one probe per key with waiting tasks (a loose scan of
 * tasks_key_waiting_idx), so a full key's backlog is never read, and cannot block another key.
 * Then the key's gate, task_key_slots (migration 0026): it locks each limited key in order and
 * counts its RUNNING tasks afresh, and the statement starts at most that many of the key: never
 * more than the limit across processes, even for a moment (a claim racing for the key's last slot
 * waits for the other's commit, and then sees it).
 *
 * A task over its key's limit stays QUEUED, its job untouched (no attempt burnt); it is started by
 * the next claim after a slot of its key frees (the process whose attempt ended claims at once).
 * The guards of claimNextAttempts hold here too. A paused or limited queue's tasks are refused in
 * SQL unless `queueLimited` says the queue is one: then at most one task starts per statement, and
 * only if task_queue_admits lets it (locking the queue's row before any key's).
 */
export async function claimKeyedAttempts(db: Db, workerId: string, next: KeyedAttempts): Promise<TaskRow[]> {
  // A limited queue's gate counts its RUNNING tasks once per statement: one task per statement.
  const n = next.queueLimited ? Math.min(1, Math.trunc(next.limit)) : Math.trunc(next.limit);
  if (n <= 0 || next.queues.length === 0) return [];
  const order = sql`k_priority desc, k_turn, k_id`;
  // Literals, not parameters, as in pickJobs (store/jobs.ts says why): one prepared statement per limit.
  const lim = sql.lit(n);
  const candidates = next.keyLimited
    ? sql`cand as (
        with recursive keys(k) as (
          (select t.key from tasks t where t.queue = ${next.queues[0]}::text and t.key is not null and t.status in ('queued', 'retrying') order by t.key limit 1)
          union all
          select (select t.key from tasks t where t.queue = ${next.queues[0]}::text and t.key is not null and t.status in ('queued', 'retrying') and t.key > keys.k order by t.key limit 1)
          from keys where keys.k is not null
        )
        select h.* from keys
        left join queues q on q.name = ${next.queues[0]}::text
        cross join lateral (
          select ${keyedCandidate} from tasks t
          where t.queue = ${next.queues[0]}::text and t.key = keys.k and ${keyedWaiting(next.types, next.labels)}
          order by (t.priority + t.age_boost) desc, t.key_turn, t.id limit ${lim}) h
        where keys.k is not null
          -- Advisory (the statement's snapshot): skips full keys cheaply; task_key_slots decides.
          and (coalesce((q.key_limits ->> keys.k)::int, q.key_concurrency) is null
            or (select count(*) from tasks r where r.queue = ${next.queues[0]}::text and r.key = keys.k and r.key is not null and r.status = 'running')
              < coalesce((q.key_limits ->> keys.k)::int, q.key_concurrency))
        order by ${order} limit ${sql.lit(2 * n)})`
    : sql`cand as (
        -- VALUES, not unnest(array): the planner then knows how many queues there are, and keeps a
        -- generic plan (with unnest's default estimate of 10 rows it re-planned at every call).
        select h.* from (values ${sql.join(next.queues.map((q) => sql`(${q}::text)`))}) as s(queue)
        cross join lateral (
          select ${keyedCandidate} from tasks t
          where t.queue = s.queue and ${keyedWaiting(next.types, next.labels)}
          order by (t.priority + t.age_boost) desc, t.key_turn, t.id limit ${lim}) h
        order by ${order} limit ${lim})`;
  const limits = next.keyLimited
    ? [
        sql`ranked as (select kj.*, row_number() over (partition by kj.k_queue, kj.k_key order by ${order}) as k_rank from keyjobs kj)`,
        // The gate: called once, for every key among the candidates (see migration 0026's hazard note).
        // In a limited queue the queue's gate runs first (lateral), so every claim locks the queue's
        // row before a key's, as claimAttempt does: no two claims take them in opposite orders.
        next.queueLimited
          ? sql`slots as (select s.* from (select task_queue_admits(${next.queues[0]}::text) as ok) qg
              cross join lateral task_key_slots((select array_agg(k_queue) from ranked), (select array_agg(k_key) from ranked)) s where qg.ok)`
          : sql`slots as (select * from task_key_slots((select array_agg(k_queue) from ranked), (select array_agg(k_key) from ranked)))`,
        sql`chosen as (select r.* from ranked r join slots g on g.slot_queue = r.k_queue and g.slot_key = r.k_key
          where r.k_rank <= g.slot_free order by ${order} limit ${lim})`,
      ]
    : [sql`chosen as (select * from keyjobs)`];
  const gate = next.queueLimited
    ? sql`tasks.queue = ${next.queues[0]}::text`
    : next.keyLimited
    ? sql`tasks.queue = ${next.queues[0]}::text and not exists (select 1 from queues q where q.name = tasks.queue and (q.paused or q.concurrency is not null))`
    : sql`not exists (select 1 from queues q where q.name = tasks.queue
        and (q.paused or q.concurrency is not null or q.key_concurrency is not null or q.key_limits <> '{}'::jsonb))`;
  // One prepared statement per limit (and, for the turns, per number of queues: see VALUES above).
  const name = next.queueLimited ? "task_claim_keyed_queue_limited" : next.keyLimited ? `task_claim_keyed_limited_${n}` : `task_claim_keyed_${n}_${next.queues.length}`;
  return queryPrepared(db, name, transition({
    with: [candidates, lockJobsOfTasks("cand"), ...limits],
    change: {
      set: claimSet(workerId),
      from: sql`chosen as c`,
      where: sql`tasks.id = c.k_id and ${waitingFor("tasks", sql`c.k_attempt`)} and tasks.key is not null and ${notRateLimited}
        and ${labelsAllow("tasks", pairsOf(next.labels))} and ${gate}`,
    },
    details: claimDetails(workerId),
    takeJob: sql`c.c_job`,
  }));
}

/** What one rate-limited claim statement may take (claimRateLimitedAttempt). */
export interface RateLimitedAttempt {
  /** The rate limit (rate_limits.name, migration 0031). */
  limit: string;
  /** The queues this process serves. */
  queues: string[];
  /** The task types this process runs. */
  types: string[];
  /** The process's labels (sorted "key=value" pairs), as in NextAttempts. */
  labels?: string[];
  /**
   * The limit's per_key as the caller last read it: chooses how candidates are found. The bucket
   * taken is always the one the limit names in the database, so a stale view costs a start, never
   * the limit.
   */
  perKey?: boolean;
}

/**
 * Event `claim` of ONE task under rate limit `limit` (migrations 0031, 0033), fetch and claim in
 * one statement, as the limited queue's path does: the candidates are the first waiting tasks of the
 * limit's scope that this process serves, in the keyed claim's order (priority + age_boost, then
 * key_turn, then id: keys take turns within the limit, with their weights), their jobs locked SKIP
 * LOCKED; the first one is started only if task_rate_take takes all its units from its bucket under
 * the bucket's row lock (so the limit holds across every process and agent), and its queue's and
 * key's gates admit it (task_queue_admits, task_key_admits). A task refused stays QUEUED with its
 * job (no attempt burnt); units refused are not taken, and no task behind it is tried instead, so
 * a task needing many units is not starved by smaller ones after it.
 *
 * An unkeyed task has no turn: it stands at its queue's clock (the first waiting keyed turn of its
 * level), so between unkeyed tasks and the keys' current round the older goes first. With
 * `perKey`, only each key's first task is a candidate, and only if its key's bucket holds its units
 * by the statement's snapshot: a key out of units blocks neither the others nor, by a smaller task
 * of its own passing it, its own first task.
 *
 * Cost: one statement per start and one bucket row lock, a point of serialisation for the limit's
 * claims. Without `perKey` the keyed candidates are read from tasks_keyed_waiting_idx (the first 4
 * per queue served) and the unkeyed ones are the first 4 of the scope's unkeyed waiting tasks
 * (sorted); with `perKey`, every waiting task of the scope is read and ranked per key.
 */
export async function claimRateLimitedAttempt(db: Db, workerId: string, next: RateLimitedAttempt): Promise<TaskRow | undefined> {
  if (next.queues.length === 0 || next.types.length === 0) return undefined;
  const inScope = (t: string) => {
    const col = (c: string) => sql.ref(`${t}.${c}`);
    return sql`${col("status")} in ('queued', 'retrying') and ${col("run_at")} <= now() and ${col("cancel_requested_at")} is null and ${col("type")} = any(${next.types}::text[])
      and ${labelsAllow(t, pairsOf(next.labels))} and (${col("queue")} = lim.queue or (${col("type")} = lim.task_type and not exists (select 1 from rate_limits o where o.queue = ${col("queue")})))`;
  };
  const candidate = sql`t.id as k_id, t.attempts + 1 as k_attempt, t.priority + t.age_boost as k_priority`;
  // The turn an unkeyed task of queue `q` and effective priority `p` stands at: its level's clock.
  const clock = (q: RawBuilder<unknown>, p: RawBuilder<unknown>) =>
    sql`coalesce((select h.key_turn from tasks h where h.key is not null and h.status in ('queued', 'retrying') and h.queue = ${q}
      and (h.priority + h.age_boost) = ${p} order by (h.priority + h.age_boost) desc, h.key_turn limit 1), 0)`;
  const candidates = next.perKey
    ? [
        sql`scope as (
          select t.id, t.attempts + 1 as k_attempt, t.priority + t.age_boost as k_priority, t.queue, t.key, t.key_turn, t.units from tasks t, lim
          where t.queue = any(${next.queues}::text[]) and ${inScope("t")})`,
        sql`turns as (
          select s.*, coalesce(s.key_turn, min(s.key_turn) over (partition by s.queue, s.k_priority), 0) as k_turn,
            row_number() over (partition by s.key order by s.k_priority desc, coalesce(s.key_turn, 0), s.id) as k_rank
          from scope s)`,
        sql`cand as (
          select u.id as k_id, u.k_attempt, u.k_priority, u.k_turn from turns u, lim
          where u.k_rank = 1 and (select p.tokens from task_rate_peek(lim.name, u.key) p) >= u.units
          order by u.k_priority desc, u.k_turn, u.id limit 4)`,
      ]
    : [
        // VALUES, not unnest: one generic plan per number of queues (as claimKeyedAttempts).
        sql`cand as (
          select c.* from (
            select h.* from (values ${sql.join(next.queues.map((q) => sql`(${q}::text)`))}) as s(queue) cross join lim
            cross join lateral (
              select ${candidate}, t.key_turn as k_turn from tasks t
              where t.queue = s.queue and t.key is not null and ${inScope("t")}
              order by (t.priority + t.age_boost) desc, t.key_turn, t.id limit 4) h
            union all
            select u.k_id, u.k_attempt, u.k_priority, ${clock(sql`u.queue`, sql`u.k_priority`)} as k_turn from (
              select ${candidate}, t.queue from tasks t, lim
              where t.key is null and t.queue = any(${next.queues}::text[]) and ${inScope("t")}
              order by t.priority desc, t.id limit 4) u
          ) c
          order by c.k_priority desc, c.k_turn, c.k_id limit 4)`,
      ];
  const name = next.perKey ? "task_claim_rate_limited_per_key" : `task_claim_rate_limited_${next.queues.length}`;
  const rows = await queryPrepared(db, name, transition({
    with: [
      sql`lim as (select * from rate_limits where name = ${next.limit}::text)`,
      ...candidates,
      lockJobsOfTasks("cand"),
      sql`chosen as (select * from keyjobs order by k_priority desc, k_turn, k_id limit 1)`,
    ],
    change: {
      set: claimSet(workerId),
      from: sql`chosen as c`,
      // The gates last, the bucket's after the queue's and the key's: a unit is taken only for a task that starts.
      where: sql`tasks.id = c.k_id and ${waitingFor("tasks", sql`c.k_attempt`)} and task_rate_limit_of(tasks.queue, tasks.type) = ${next.limit}::text
        and ${labelsAllow("tasks", pairsOf(next.labels))}
        and task_queue_admits(tasks.queue) and task_key_admits(tasks.queue, tasks.key) and task_rate_take(${next.limit}::text, tasks.key, tasks.units)`,
    },
    details: claimDetails(workerId),
    takeJob: sql`c.c_job`,
  }));
  return rows[0];
}

