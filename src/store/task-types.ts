import { sql, type Kysely } from "kysely";
import type { Database } from "./schema.js";

/** One version of a task type, as a worker (or the server, for the built-ins) registers it. */
export interface TaskTypeVersionInput {
  name: string;
  schemaHash: string;
  description: string;
  parameterSchema: Record<string, unknown>;
  defaultTimeoutMs: number;
  defaultMaxAttempts: number;
  defaultQueue: string | null;
}

/** A registered version, with the live worker processes that serve it. */
export interface TaskTypeVersion extends TaskTypeVersionInput {
  registeredAt: Date;
  /** Ids of live worker processes serving this version, sorted. */
  workers: string[];
}

/**
 * Records versions of task types (idempotent: an existing version keeps its first registration
 * time, so an older worker restarting never makes its version "newer").
 */
export async function upsertTaskTypes(db: Kysely<Database>, versions: TaskTypeVersionInput[]): Promise<void> {
  if (versions.length === 0) return;
  await sql`
    insert into task_types (name, schema_hash, description, parameter_schema, default_timeout_ms, default_max_attempts, default_queue)
    select * from json_to_recordset(${JSON.stringify(versions.map(toRecord))}::json)
      as v(name text, schema_hash text, description text, parameter_schema json, default_timeout_ms int, default_max_attempts int, default_queue text)
    order by name
    on conflict (name, schema_hash) do update set last_registered_at = now()
  `.execute(db);
}

function toRecord(v: TaskTypeVersionInput) {
  return {
    name: v.name,
    schema_hash: v.schemaHash,
    description: v.description,
    parameter_schema: v.parameterSchema,
    default_timeout_ms: v.defaultTimeoutMs,
    default_max_attempts: v.defaultMaxAttempts,
    default_queue: v.defaultQueue,
  };
}

/**
 * Registers the versions a worker process serves, in one transaction: the versions themselves, the
 * worker's `types` and one task_type_workers row per type (replacing what it registered before).
 * The worker's row must exist (its liveness lock inserts it).
 */
export async function registerWorkerTypes(db: Kysely<Database>, workerId: string, versions: TaskTypeVersionInput[]): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await upsertTaskTypes(trx, versions);
    await sql`update workers set types = ${versions.map((v) => v.name)}::text[] where id = ${workerId}`.execute(trx);
    await sql`delete from task_type_workers where worker_id = ${workerId}`.execute(trx);
    if (versions.length > 0) {
      await sql`
        insert into task_type_workers (worker_id, name, schema_hash)
        select ${workerId}, name, schema_hash from unnest(${versions.map((v) => v.name)}::text[], ${versions.map((v) => v.schemaHash)}::text[]) as v(name, schema_hash)
        where exists (select 1 from workers where id = ${workerId})
      `.execute(trx);
    }
  });
}

interface VersionRow {
  name: string;
  schema_hash: string;
  description: string;
  parameter_schema: Record<string, unknown>;
  default_timeout_ms: number;
  default_max_attempts: number;
  default_queue: string | null;
  registered_at: Date;
  workers: string[];
}

/**
 * Every registered version of the named types (all types when `names` is undefined), newest first
 * within a type, with the worker processes serving each that are alive: their row exists (the
 * reconciler deletes dead ones) and heartbeated within `liveMs`.
 */
export async function listTaskTypeVersions(db: Kysely<Database>, liveMs: number, names?: string[]): Promise<TaskTypeVersion[]> {
  const { rows } = await sql<VersionRow>`
    select t.name, t.schema_hash, t.description, t.parameter_schema, t.default_timeout_ms, t.default_max_attempts, t.default_queue, t.registered_at,
      coalesce(array(
        select w.id from task_type_workers tw join workers w on w.id = tw.worker_id
        where tw.name = t.name and tw.schema_hash = t.schema_hash and w.heartbeat_at > now() - make_interval(secs => ${liveMs / 1000})
        order by w.id), '{}') as workers
    from task_types t
    where ${names === undefined ? sql`true` : sql`t.name = any(${names}::text[])`}
    order by t.name, t.registered_at desc, t.schema_hash
  `.execute(db);
  return rows.map((r) => ({
    name: r.name,
    schemaHash: r.schema_hash,
    description: r.description,
    parameterSchema: r.parameter_schema,
    defaultTimeoutMs: r.default_timeout_ms,
    defaultMaxAttempts: r.default_max_attempts,
    defaultQueue: r.default_queue,
    registeredAt: r.registered_at,
    workers: r.workers,
  }));
}
