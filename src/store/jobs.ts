import { sql, type Kysely, type RawBuilder } from "kysely";
import type { Database } from "./schema.js";

/**
 * Everything that touches graphile-worker's schema from SQL lives in this file: its functions
 * (add_jobs, remove_job, force_unlock_workers), its public jobs view, and its private tables
 * (_private_jobs, _private_tasks), which the claim reads and deletes from directly. Those tables
 * are not graphile-worker's API: GRAPHILE_SCHEMA_USED lists every relation, column and function
 * used here, and test/graphile-schema.test.ts checks them against the pinned version's migrated
 * schema (and that no other file in src/ names graphile_worker), so an upgrade that changes them
 * fails a test instead of the claim.
 */

// The job contract: how a task's job is named, flagged and retried.

/**
 * The graphile-worker task identifier a task's attempts run under: one per (queue, type),
 * `run:<queue>:<type>`; its payload is `{taskId, attempt}` (store/jobs.ts addJobsOf). A worker
 * process claims only the identifiers of the queues it serves and the types it has enabled
 * (store/lifecycle claimNextAttempts), so it never takes a task it cannot run: such a task waits
 * QUEUED for a worker that can. Neither queue names nor type names contain ':'.
 */
export function runTaskIdentifier(queue: string, type: string): string {
  return `run:${queue}:${type}`;
}

/** The prefix every runTaskIdentifier starts with (for SQL that selects our jobs: `like 'run:%'`). */
export const RUN_TASK_PREFIX = "run:";

/**
 * The graphile-worker job flag a task's job carries for its queue, `queue:<name>`. A worker leaves
 * the jobs of a limited or held queue out of its batch claim by excluding their flag (queue-gate.ts).
 */
export function queueFlag(queue: string): string {
  return `queue:${queue}`;
}

/**
 * The graphile-worker task identifier of a keyed task's job (tasks.key set), `run:<queue>:<type>:keyed`:
 * apart from the unkeyed jobs of its (queue, type), so the batch claim, which reads the jobs of
 * the identifiers it is given, never reads keyed jobs (a backlog of them would otherwise be read
 * and refused at every batch). Keyed tasks are claimed in their keys' turns (claimKeyedAttempts,
 * which finds their jobs by job key), or one at a time in a limited queue, where the key's gate
 * counts its RUNNING tasks.
 */
export function keyedRunTaskIdentifier(queue: string, type: string): string {
  return `${runTaskIdentifier(queue, type)}${KEYED_SUFFIX}`;
}

const KEYED_SUFFIX = ":keyed";

/**
 * The prefix of the graphile-worker task identifiers of unkeyed labeled tasks' jobs (tasks.labels
 * set, migration 0032), `run:<queue>:<type>:on:`, followed by the id of the task's label set
 * (task_label_set_id): one identifier per (queue, type, label set), apart from the unlabeled jobs
 * of its (queue, type). A process without labels never reads them (its claim costs what it did
 * before labels existed); one with labels reads the identifiers of the label sets it has every
 * label of (pickJobs), so jobs it may not run are never read at all. A keyed labeled task keeps its
 * keyed identifier: the keyed claim reads tasks, and checks the labels there.
 */
export function labeledRunTaskPrefix(queue: string, type: string): string {
  return `${runTaskIdentifier(queue, type)}${LABELED_INFIX}`;
}

const LABELED_INFIX = ":on:";

/**
 * graphile-worker's own retries of a job cover infrastructure failures only (the handler threw
 * because, say, the database went away); task-level retries and backoff are ours.
 */
export const JOB_MAX_ATTEMPTS = 10;

/** What this file assumes of graphile-worker's schema: relation -> column -> type (as format_type prints it). */
export const GRAPHILE_SCHEMA_USED = {
  relations: {
    _private_jobs: {
      id: "bigint", task_id: "integer", payload: "json", priority: "smallint", run_at: "timestamp with time zone",
      is_available: "boolean", flags: "jsonb", locked_at: "timestamp with time zone", updated_at: "timestamp with time zone",
      key: "text", attempts: "smallint", max_attempts: "smallint", last_error: "text", locked_by: "text", job_queue_id: "integer",
    },
    _private_tasks: { id: "integer", identifier: "text" },
    jobs: { id: "bigint", key: "text", task_identifier: "text", locked_at: "timestamp with time zone", attempts: "smallint", max_attempts: "smallint" },
  },
  /** The job_spec composite add_jobs takes, attribute by attribute in order. */
  jobSpec: ["identifier text", "payload json", "queue_name text", "run_at timestamp with time zone", "max_attempts smallint", "job_key text", "priority smallint", "flags text[]"],
  /** Functions called, with their argument types. */
  functions: ["add_jobs(graphile_worker.job_spec[], boolean)", "remove_job(text)", "force_unlock_workers(text[])"],
} as const;

/** A task's graphile-worker job key, `task:<id>`, from an id column: at most one pending job per task. */
export function taskJobKey(idColumn: string): RawBuilder<string> {
  return sql<string>`'task:' || ${sql.ref(idColumn)}::text`;
}

/**
 * A graphile_worker.job_spec[] built from the rows of `source` (a CTE or table with id, queue, type,
 * run_at, priority, attempts, key and labels). Our priority is "higher first"; graphile-worker's is "lower
 * first", hence the negation. The job is filed under the task's (queue, type) identifier (a keyed
 * task's under its keyed one, a labeled task's under its labeled one) and flagged with its queue (queueFlag says why).
 */
function jobSpecsFrom(source: string): RawBuilder<unknown> {
  const from = sql.ref(source);
  return sql`(select array_agg(row(
      ${RUN_TASK_PREFIX}::text || s.queue || ':' || s.type
        || case when s.key is not null then ${KEYED_SUFFIX}::text when s.labels is not null then ${LABELED_INFIX}::text || task_label_set_id(s.labels) else '' end
        /* = runTaskIdentifier, keyedRunTaskIdentifier or labeledRunTaskPrefix + the label set's id */,
      json_build_object('taskId', s.id::text, 'attempt', s.attempts + 1),
      null::text,
      s.run_at,
      ${JOB_MAX_ATTEMPTS}::smallint,
      ${taskJobKey("s.id")},
      (-s.priority)::smallint,
      array[${queueFlag("")}::text || s.queue] /* = [queueFlag(queue)] */
    )::graphile_worker.job_spec) from ${from} as s)`;
}

/**
 * A SELECT that adds the next attempt's job of every row of `source` (a CTE's body; run it inside
 * the caller's statement). add_jobs is not called when `source` is empty: it would still notify
 * JOBS_INSERT_CHANNEL (its count null), waking every worker's fetch for nothing; an outcome batch with no
 * retry in it did that once per flush (a third as much database time as the claims, wasted).
 */
export function addJobsOf(source: string): RawBuilder<unknown> {
  return sql`select * from graphile_worker.add_jobs(${jobSpecsFrom(source)}) where exists (select from ${sql.ref(source)})`;
}

/** A SELECT that removes the pending job of every row of `source` (a CTE's body). */
export function removeJobsOf(source: string): RawBuilder<unknown> {
  return sql`select graphile_worker.remove_job(${taskJobKey("id")}) from ${sql.ref(source)}`;
}

/** Releases every graphile-worker job lock held under the ids in `ids` (an expression of type text[]): a SELECT. */
export function forceUnlockWorkers(ids: RawBuilder<unknown>): RawBuilder<unknown> {
  return sql`select graphile_worker.force_unlock_workers(${ids})`;
}

/** SQL condition: the task in `idColumn` has a job that can still run (pending, or locked by a fetcher). */
export function hasRunnableJob(idColumn: string): RawBuilder<boolean> {
  return sql<boolean>`exists (
    select 1 from graphile_worker.jobs j
    where j.key = ${taskJobKey(idColumn)} and (j.locked_at is not null or j.attempts < j.max_attempts))`;
}

/** What one claim statement takes (see claimNextAttempts in lifecycle/claim.ts). */
export interface JobPick {
  identifiers: string[];
  forbiddenFlags: string[];
  limit: number;
  /**
   * The claiming process's labels (sorted "key=value" pairs) and the prefixes of the labeled
   * identifiers it reads (labeledRunTaskPrefix): it reads the jobs of every label set among its
   * labels. Absent: no labeled job is read (the statement is the one without labels).
   */
  labels?: { pairs: string[]; prefixes: string[] };
}

/**
 * The claim's CTEs over graphile-worker's jobs: `picked` takes the best available jobs of these
 * identifiers (graphile-worker's order: priority, then due time; FOR UPDATE SKIP LOCKED, so
 * concurrent fetchers never take the same job), as (c_job, c_id, c_attempt): job id, task id,
 * attempt; `dropped` deletes the picked jobs for which `usable` (a condition over p.c_id and
 * p.c_attempt) does not hold: a stale or duplicate job, deleted unused as graphile-worker would
 * have completed it. A payload we did not write names no task (c_id null).
 *
 * With `labels`, the jobs of the labeled identifiers whose label set is among the process's labels
 * are read too (the sets from task_label_sets, a few rows, once per statement): jobs it may not run
 * are not read, so they can neither fill its batch nor cost it a read (docs/design/routing.md).
 */
export function pickJobs(pick: JobPick, usable: RawBuilder<boolean>): RawBuilder<unknown>[] {
  const labeled = pick.labels;
  const wanted = labeled === undefined
    ? sql`${pick.identifiers}::text[]`
    : sql`${pick.identifiers}::text[] || array(select p || ls.id from unnest(${labeled.prefixes}::text[]) p cross join task_label_sets ls where ls.labels <@ ${labeled.pairs}::text[])`;
  return [
    sql`picked as (
        select j.id as c_job,
          case when j.payload->>'taskId' ~ '^[0-9]{1,18}$' then (j.payload->>'taskId')::bigint end as c_id,
          case when json_typeof(j.payload->'attempt') = 'number' then (j.payload->>'attempt')::numeric end as c_attempt
        -- Each identifier's jobs in graphile-worker's order (priority, then due time), read through
        -- its index whatever the statistics say (migration 0035). The limit is a literal: each limit
        -- is its own prepared statement (claimNextAttempts names it), whose generic plan is kept.
        from task_pick_jobs(array(select gt.id from graphile_worker._private_tasks gt where gt.identifier = any(${wanted})),
          ${pick.forbiddenFlags}::text[], ${sql.lit(Math.trunc(pick.limit))}) j)`,
    sql`dropped as (
        delete from graphile_worker._private_jobs d using picked p
        where d.id = p.c_job and not (${usable}))`,
  ];
}

/**
 * The keyed claim's CTE `keyjobs` over `source` (a CTE of candidate tasks with k_id, in the
 * claim's order): each candidate with its task's available job as c_job, locked FOR UPDATE SKIP
 * LOCKED, so concurrent claims never take the same job; a candidate whose job another claim holds,
 * or that has none, is left out. Looked up by the job key (graphile-worker's unique index on it).
 */
export function lockJobsOfTasks(source: string): RawBuilder<unknown> {
  return sql`keyjobs as (
    select j.id as c_job, cand.* from ${sql.ref(source)} cand
    join graphile_worker._private_jobs j on j.key = ${taskJobKey("cand.k_id")}
    where j.is_available = true and j.run_at <= now()
    for update of j skip locked)`;
}

/** A data-modifying CTE body that deletes the jobs whose ids `source.column` holds (the jobs a claim took). */
export function deleteTakenJobs(source: string, column: string): RawBuilder<unknown> {
  return sql`delete from graphile_worker._private_jobs where id in (select ${sql.ref(`${source}.${column}`)} from ${sql.ref(source)})`;
}

/**
 * Priority aging, so low priorities do not starve: a waiting task's job gets the effective
 * priority `priority + floor(time due / agingMs)` (graphile-worker's is its negation, clamped to
 * smallint). Run by the reconcile pass (once a minute); touches only available jobs that have been
 * due for at least agingMs and whose priority would improve, the longest-waiting first, at most
 * `limit` per pass. Returns how many jobs it changed.
 */
export async function agePriorities(db: Kysely<Database>, agingMs: number, limit = 5_000): Promise<number> {
  if (agingMs <= 0) return 0;
  const { rows } = await sql<{ n: string }>`
    with aged as (
      select j.id, greatest(-32768, least(32767,
          -t.priority - floor(extract(epoch from now() - t.run_at) * 1000 / ${agingMs}::int)))::smallint as priority
      from graphile_worker._private_jobs j
      join graphile_worker._private_tasks gt on gt.id = j.task_id and starts_with(gt.identifier, ${RUN_TASK_PREFIX}::text)
      join tasks t on t.id = (j.payload->>'taskId')::bigint
      where j.is_available = true and j.run_at <= now() - make_interval(secs => ${agingMs / 1000})
        and t.status in ('queued', 'retrying')
      order by j.run_at
      limit ${limit}
    ),
    changed as (
      update graphile_worker._private_jobs j set priority = aged.priority, updated_at = now()
      from aged where j.id = aged.id and j.priority > aged.priority and j.locked_at is null
      returning 1
    )
    select count(*) as n from changed
  `.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/**
 * Priority aging of keyed tasks (migration 0033): the keyed claims order by the task's own
 * priority + age_boost, not by its job's priority (they read the tasks, in their keys' turns), so
 * the reconcile pass writes the same age into age_boost: floor(time due / agingMs), only improving,
 * the longest-waiting first, at most `limit` per pass. It reads every keyed waiting task (the
 * partial index tasks_keyed_waiting_idx; unkeyed tasks are not read). Returns how many it changed.
 */
export async function ageKeyedTasks(db: Kysely<Database>, agingMs: number, limit = 5_000): Promise<number> {
  if (agingMs <= 0) return 0;
  const { rows } = await sql<{ n: string }>`
    with aged as (
      select t.id, a.boost from tasks t
      cross join lateral (select least(1000000, floor(extract(epoch from now() - t.run_at) * 1000 / ${agingMs}::int))::int as boost) a
      where t.key is not null and t.status in ('queued', 'retrying') and a.boost > t.age_boost
      order by t.run_at
      limit ${limit}
    ),
    changed as (
      update tasks t set age_boost = aged.boost from aged where t.id = aged.id and t.key is not null and t.status in ('queued', 'retrying') and t.age_boost < aged.boost
      returning 1
    )
    select count(*) as n from changed
  `.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/** graphile-worker task jobs (run:<queue>:<type>) still present, and how many of them are locked. */
export async function pendingJobCounts(db: Kysely<Database>): Promise<{ jobs: number; locked: number }> {
  const { rows } = await sql<{ jobs: number; locked: number }>`
    select count(*)::int as jobs, count(*) filter (where locked_at is not null)::int as locked
    from graphile_worker.jobs where starts_with(task_identifier, ${RUN_TASK_PREFIX}::text)
  `.execute(db);
  return rows[0] ?? { jobs: 0, locked: 0 };
}

/** A task job (run:<queue>:<type>) still in graphile-worker's table, with its task's state, for the chaos report. */
export interface LeftoverJob {
  job_id: string;
  task_id: string | null;
  task_status: string | null;
  attempts: number;
  run_at: Date;
  locked_by: string | null;
  last_error: string | null;
}

/** The task jobs left over (at most `limit`), so a failing audit says why they are there. */
export async function leftoverJobs(db: Kysely<Database>, limit = 10): Promise<LeftoverJob[]> {
  const { rows } = await sql<LeftoverJob>`
    select j.id::text as job_id, t.id::text as task_id, t.status::text as task_status, j.attempts, j.run_at, j.locked_by, j.last_error
    from graphile_worker._private_jobs j
    join graphile_worker._private_tasks k on k.id = j.task_id
    left join tasks t on t.id = (j.payload->>'taskId')::bigint
    where starts_with(k.identifier, ${RUN_TASK_PREFIX}::text)
    order by j.id limit ${limit}
  `.execute(db);
  return rows;
}
