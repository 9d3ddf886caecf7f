import { sql, type Kysely } from "kysely";
import type { Database } from "./schema.js";

/** A live worker process as ListWorkers shows it. */
export interface WorkerView {
  id: string;
  host: string | null;
  pid: number | null;
  slots: number;
  busy: number;
  types: string[];
  queues: string[];
  /** Its labels (sorted "key=value" pairs). */
  labels: string[];
  startedAt: Date;
  heartbeatAt: Date;
  /** Remote agents only (null for worker processes): see AgentStream in agents.ts. */
  agentName: string | null;
  address: string | null;
  replica: string | null;
  version: string | null;
}

/**
 * The worker processes whose last heartbeat is within `leaseMs` (the same rule the reconciler uses
 * before it takes a worker for lost), by id.
 */
export async function listLiveWorkers(db: Kysely<Database>, leaseMs: number): Promise<WorkerView[]> {
  const { rows } = await sql<{
    id: string;
    host: string | null;
    pid: number | null;
    slots: number;
    busy: number;
    types: string[];
    queues: string[];
    labels: string[];
    started_at: Date;
    heartbeat_at: Date;
    agent_name: string | null;
    address: string | null;
    replica: string | null;
    version: string | null;
  }>`
    select id, host, pid, slots, busy, types, queues, labels, started_at, heartbeat_at, agent_name, address, replica, version from workers
    where heartbeat_at >= now() - make_interval(secs => ${leaseMs / 1000})
    order by id
  `.execute(db);
  return rows.map((r) => ({
    id: r.id,
    host: r.host,
    pid: r.pid,
    slots: r.slots,
    busy: r.busy,
    types: r.types,
    queues: r.queues,
    labels: r.labels,
    startedAt: r.started_at,
    heartbeatAt: r.heartbeat_at,
    agentName: r.agent_name,
    address: r.address,
    replica: r.replica,
    version: r.version,
  }));
}

/** Since when a worker's heartbeat counts as live, on the database's clock. */
export async function liveSince(db: Kysely<Database>, leaseMs: number): Promise<Date> {
  const { rows } = await sql<{ since: Date }>`select now() - make_interval(secs => ${leaseMs / 1000}) as since`.execute(db);
  return rows[0]!.since;
}

/** Removes a worker process's row when it stops cleanly. */
export async function unregisterWorker(db: Kysely<Database>, workerId: string): Promise<void> {
  await db.deleteFrom("workers").where("id", "=", workerId).execute();
}

/** Live worker processes (heartbeat within `leaseMs`, as listLiveWorkers), their slots and busy slots, summed. */
export async function workerCapacity(db: Kysely<Database>, leaseMs: number): Promise<{ live: number; slots: number; busy: number }> {
  const { rows } = await sql<{ live: string; slots: string | null; busy: string | null }>`
    select count(*) as live, sum(slots) as slots, sum(busy) as busy from workers
    where heartbeat_at >= now() - make_interval(secs => ${leaseMs / 1000})
  `.execute(db);
  const r = rows[0];
  return { live: Number(r?.live ?? 0), slots: Number(r?.slots ?? 0), busy: Number(r?.busy ?? 0) };
}

/**
 * Waiting tasks (QUEUED, RETRYING) whose labels no live worker or agent (heartbeat within
 * `leaseMs`) has, by label set, most first: what ListWorkers reports as nobody's. Reads only the
 * waiting labeled tasks (tasks_labeled_waiting_idx) and, per label set, the live workers' rows.
 */
export async function unmatchedLabels(db: Kysely<Database>, leaseMs: number, limit = 50): Promise<{ labels: string[]; waiting: number }[]> {
  const { rows } = await sql<{ labels: string[]; waiting: string }>`
    select t.labels, count(*) as waiting from tasks t
    where t.labels is not null and t.status in ('queued', 'retrying')
      and not exists (select 1 from workers w where w.heartbeat_at >= now() - make_interval(secs => ${leaseMs / 1000}) and t.labels <@ w.labels)
    group by t.labels order by count(*) desc, t.labels limit ${limit}
  `.execute(db);
  return rows.map((r) => ({ labels: r.labels, waiting: Number(r.waiting) }));
}

/** Whether some live worker or agent (heartbeat within `leaseMs`) has every one of `labels` (a waiting task's wait reason). */
export async function someWorkerHasLabels(db: Kysely<Database>, labels: string[], leaseMs: number): Promise<boolean> {
  const { rows } = await sql<{ any: boolean }>`
    select exists (select 1 from workers w where w.heartbeat_at >= now() - make_interval(secs => ${leaseMs / 1000}) and ${labels}::text[] <@ w.labels) as any
  `.execute(db);
  return rows[0]?.any ?? false;
}
