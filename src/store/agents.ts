/**
 * What the control plane keeps of remote agents (issue 26): an agent is a row in `workers` like a
 * worker process (ListWorkers shows it; heartbeat() in store/lifecycle writes it), without a
 * liveness lock (lock_key null), so the reconciler judges it by its heartbeat alone (the lease).
 */
import { sql, type Kysely } from "kysely";
import { IN_ATTEMPT, rescueLostAttempts, type AttemptRef } from "./lifecycle/index.js";
import type { Database, TaskRow } from "./schema.js";

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
