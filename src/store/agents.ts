/**
 * What the control plane keeps of remote agents (issue 26): an agent is a row in `workers` like a
 * worker process (ListWorkers shows it; heartbeat() in store/lifecycle writes it), without a
 * liveness lock (lock_key null), so the reconciler judges it by its heartbeat alone (the lease).
 */
import { sql, type Kysely } from "kysely";
import type { Db } from "./db.js";
import { IN_ATTEMPT, rescueLostAttempts, type AttemptRef } from "./lifecycle/index.js";
import type { Database, TaskRow } from "./schema.js";
import type { QueryResult } from "pg";

/** What an agent registered: the types it runs, the queues it serves and its slots. */
export interface AgentRegistration {
  types: string[];
  queues: string[];
  slots: number;
  host: string | null;
  /** Its labels (sorted "key=value" pairs, migration 0032). */
  labels: string[];
}

/** The registration an agent's worker row records, or undefined if it has none (never registered, or judged dead). */
export async function findAgentRegistration(db: Kysely<Database>, agentId: string): Promise<AgentRegistration | undefined> {
  const { rows } = await sql<AgentRegistration>`select types, queues, slots, host, labels from workers where id = ${agentId}`.execute(db);
  return rows[0];
}

/**
 * Takes back attempts claimed for an agent that the agent never acknowledged (the start was lost
 * on the stream, or the stream ended before the agent named them in a heartbeat): lifecycle event
 * `rescue`, as the reconciler does after a lease, but at once and only for these attempts, still
 * RUNNING (or PAUSED) under this agent. Each is retried at once and does not count as a failure.
 */
export async function takeBackUnacknowledged(db: Kysely<Database>, agentId: string, attempts: AttemptRef[], ackMs: number): Promise<TaskRow[]> {
  if (attempts.length === 0) return [];
  return rescueLostAttempts(db, {
    // heartbeat_at = started_at: no heartbeat has renewed the attempt since its claim (a heartbeat
    // on any replica acknowledges it), so only starts the agent never acknowledged are taken.
    lost: sql<boolean>`(worker_id = ${agentId} and heartbeat_at = started_at and (id, attempts) in (
      select * from unnest(${attempts.map((a) => a.taskId)}::bigint[], ${attempts.map((a) => a.attempt)}::int[])))`,
    exited: [],
    lease: `${Math.round(ackMs / 1000)}s (its assignment was not acknowledged)`,
    limit: attempts.length,
  });
}

/** Of `attempts`, those that are running (or paused mid-attempt) under `agentId` now: what it may still write logs for. */
export async function attemptsHeldBy(db: Kysely<Database>, agentId: string, attempts: AttemptRef[]): Promise<Set<string>> {
  if (attempts.length === 0) return new Set();
  const { rows } = await sql<{ id: string; attempts: number }>`
    select id, attempts from tasks
    where worker_id = ${agentId} and ${IN_ATTEMPT} and (id, attempts) in (
      select * from unnest(${attempts.map((a) => a.taskId)}::bigint[], ${attempts.map((a) => a.attempt)}::int[]))
  `.execute(db);
  return new Set(rows.map((r) => `${r.id}:${r.attempts}`));
}

/** The attempts running (or paused mid-attempt) under `agentId` now: what a new stream of the agent starts with as taken slots. */
export async function attemptsOf(db: Kysely<Database>, agentId: string): Promise<AttemptRef[]> {
  const { rows } = await sql<{ id: string; attempts: number }>`select id, attempts from tasks where worker_id = ${agentId} and ${IN_ATTEMPT}`.execute(db);
  return rows.map((r) => ({ taskId: String(r.id), attempt: r.attempts }));
}

/** How many output lines an attempt has stored (AppendLogs skips what a resent batch repeats). */
export async function attemptLineCount(db: Kysely<Database>, taskId: string, attempt: number): Promise<number> {
  const { rows } = await sql<{ n: string }>`
    select coalesce(sum(last_seq - first_seq + 1), 0) as n from task_logs where task_id = ${taskId} and attempt = ${attempt}
  `.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/**
 * Rescues the attempts of `agentId` whose lease has lapsed (heartbeat_at older than `leaseMs`), at
 * once and for this agent only: the replica that saw the agent's stream end runs it when the grace
 * it gave them (shortenLeases) is over. An attempt a heartbeat renewed meanwhile is not taken.
 * Unlike the reconciler's rule, no reconciler start is waited for: the shortened lease was set by
 * this server, which was up to see the stream end.
 */
export async function rescueLapsedAgentAttempts(db: Kysely<Database>, agentId: string, leaseMs: number, graceMs: number): Promise<TaskRow[]> {
  return rescueLostAttempts(db, {
    lost: sql<boolean>`(worker_id = ${agentId} and heartbeat_at < now() - make_interval(secs => ${leaseMs / 1000}))`,
    exited: [],
    lease: `${Math.round(graceMs / 1000)}s after its assignment stream ended`,
    limit: 1_000,
  });
}

/** The first key of the advisory lock that serialises the claims made for one agent, across replicas ('agnt'). */
const AGENT_CLAIM_LOCK_SPACE = 1634168436;

/**
 * Runs `claim` with the number of slots `agentId` has free as the database sees it (its slots less
 * the attempts it holds, on any replica), under an advisory lock per agent, so two replicas that
 * each have a stream of the agent (a reconnection not yet noticed) never claim past its slots
 * together: the second waits until the first's claim has committed, and counts it. An agent whose
 * last heartbeat (on any replica) is older than `freshMs` gets nothing. `ended` are attempts the
 * agent has reported ended whose outcomes may not be recorded yet: they run no more, so they take
 * no slot (the claim need not wait for their outcomes' transaction).
 */
export async function claimWithinSlots<T>(
  db: Db,
  agentId: string,
  slots: number,
  freshMs: number,
  claim: (free: number) => Promise<T[]>,
  ended: ReadonlySet<string> = new Set(),
): Promise<{ claimed: T[]; held: AttemptRef[]; free: number }> {
  // Hazard: the lock's connection is held while the claim takes others from the same pool; with
  // every connection held by a waiting lock holder, no claim could run. At most a third of the
  // pool holds agent claim locks at once.
  const gate = (lockHolders.get(db.pool) ?? lockHolders.set(db.pool, { active: 0, waiting: [] }).get(db.pool))!;
  const limit = Math.max(1, Math.floor((db.pool.options.max ?? 10) / 3));
  while (gate.active >= limit) await new Promise<void>((resolve) => gate.waiting.push(resolve));
  gate.active++;
  const client = await db.pool.connect().catch((err: unknown) => {
    leave(gate);
    throw err;
  });
  const agent = client.escapeLiteral(agentId);
  let locked = false;
  try {
    // The lock, then (a statement of its own, so its snapshot counts every claim committed before
    // the lock was granted) the attempts the agent holds and whether its heartbeats are fresh, in
    // one round trip: a simple query's statements each take their own snapshot. An agent whose
    // heartbeats stopped (stopped, starved, cut off behind a stream that looks open) gets no new
    // work: it would not acknowledge it, and the start would come back only after ackMs.
    const count = sql<HeldRow>`
      select coalesce(array_agg(id), '{}') as ids, coalesce(array_agg(attempts), '{}') as attempts,
        exists (select 1 from workers where id = ${sql.raw(agent)} and heartbeat_at > now() - make_interval(secs => ${sql.lit(freshMs / 1000)})) as fresh
      from tasks where worker_id = ${sql.raw(agent)} and ${IN_ATTEMPT}`.compile(db.kysely);
    if (count.parameters.length > 0) throw new Error("claimWithinSlots: the held count must be a simple query, without parameters");
    const results = (await client.query(`select pg_advisory_lock(${AGENT_CLAIM_LOCK_SPACE}, hashtext(${agent})); ${count.sql}`)) as unknown as QueryResult<HeldRow>[];
    locked = true;
    const row = results[1]?.rows[0];
    const held = (row?.ids ?? []).map((id, i) => ({ taskId: String(id), attempt: row!.attempts[i]! }));
    const running = held.filter((a) => !ended.has(`${a.taskId}:${a.attempt}`)).length;
    const free = row?.fresh ? slots - running : 0;
    return { claimed: free > 0 ? await claim(free) : [], held, free };
  } finally {
    // The claim has committed: its starts may go while the lock is released (a next claim for the
    // agent waits for it in pg_advisory_lock). A connection whose unlock may not have run is
    // closed, which releases its session lock.
    const unlocked = locked ? client.query(`select pg_advisory_unlock(${AGENT_CLAIM_LOCK_SPACE}, hashtext(${agent}))`).then(() => true, () => false) : Promise.resolve(false);
    void unlocked.then((ok) => client.release(!ok)).finally(() => leave(gate));
  }
}

interface HeldRow {
  ids: string[];
  attempts: number[];
  fresh: boolean;
}

/** Agent claim locks held per pool, and the claims waiting for a turn (see claimWithinSlots). */
const lockHolders = new WeakMap<object, { active: number; waiting: (() => void)[] }>();

function leave(gate: { active: number; waiting: (() => void)[] }): void {
  gate.active--;
  gate.waiting.shift()?.();
}

/** What ListWorkers shows of an agent beyond a worker's fields: set at Register (name, version) and when a stream opens (address, replica). */
export interface AgentDetails {
  agentName?: string;
  /** The peer address its stream comes from. */
  address?: string;
  /** The replica holding its stream (host and pid). */
  replica?: string;
  version?: string;
}

/** Records what ListWorkers shows of an agent (the fields given; a new stream replaces the last's). */
export async function recordAgentDetails(db: Kysely<Database>, agentId: string, details: AgentDetails): Promise<void> {
  const set = {
    ...(details.agentName !== undefined ? { agent_name: details.agentName } : {}),
    ...(details.address !== undefined ? { address: details.address || null } : {}),
    ...(details.replica !== undefined ? { replica: details.replica } : {}),
    ...(details.version !== undefined ? { version: details.version || null } : {}),
  };
  if (Object.keys(set).length === 0) return;
  await db.updateTable("workers").set(set).where("id", "=", agentId).execute();
}
