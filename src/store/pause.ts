import { sql, type Kysely } from "kysely";
import type { Database, TaskRow } from "./schema.js";
import { PAUSE_CHANNEL } from "./channels.js";
import { transition } from "./transitions.js";

/**
 * Pause and resume (docs/ARCHITECTURE.md "Pause and resume"). A PAUSED task is one of two kinds:
 * - held: it was QUEUED or RETRYING. Its pending job is removed, so nothing spins on it and no
 *   attempt starts; resume puts it back in paused_from and enqueues its job again.
 * - stopped mid-attempt: it was RUNNING. The worker keeps owning the attempt (worker_id, attempts,
 *   heartbeats, the graphile job it runs under) and stops the attempt's processes; resume sets it
 *   RUNNING again and the worker continues them. Workers learn of both at once through
 *   PAUSE_CHANNEL, and from every heartbeat (a missed notification).
 */

/** Holds waiting tasks (QUEUED, RETRYING) among `ids`; returns the rows it paused. */
export async function pauseWaitingTasks(db: Kysely<Database>, ids: string[], details: string): Promise<TaskRow[]> {
  if (ids.length === 0) return [];
  const { rows } = await transition({
    change: {
      set: sql`status = 'paused', paused_from = status, paused_at = now()`,
      where: sql`id = any(${ids}::bigint[]) and status in ('queued', 'retrying') and cancel_requested_at is null`,
    },
    details: sql`${details}::text`,
    removeJob: true,
  }).execute(db);
  return rows;
}

/**
 * Stops running attempts among `ids` whose type is in `pausableTypes` (their plugin can pause
 * mid-run), and tells their workers; returns the rows it paused. A task whose cancellation is
 * pending is not paused: it is stopping.
 */
export async function pauseRunningTasks(db: Kysely<Database>, ids: string[], pausableTypes: string[], details: string): Promise<TaskRow[]> {
  if (ids.length === 0 || pausableTypes.length === 0) return [];
  const { rows } = await transition({
    change: {
      set: sql`status = 'paused', paused_from = 'running', paused_at = now()`,
      where: sql`id = any(${ids}::bigint[]) and status = 'running' and cancel_requested_at is null and type = any(${pausableTypes}::text[])`,
    },
    details: sql`${details} || ' during attempt ' || attempts || ' on ' || coalesce(worker_id, '?')`,
    notify: { channel: PAUSE_CHANNEL, payload: sql<string>`id::text || ':paused'` },
  }).execute(db);
  return rows;
}

/**
 * Resumes PAUSED tasks among `ids`: a held one goes back to QUEUED or RETRYING with its job enqueued
 * again (due at its run_at: a retry's backoff still counts), a stopped one goes back to RUNNING and
 * its worker is told to continue it. Returns the rows it resumed.
 */
export async function resumeTasks(db: Kysely<Database>, ids: string[], details: string): Promise<TaskRow[]> {
  if (ids.length === 0) return [];
  const { rows } = await transition({
    change: {
      // A stopped attempt whose worker was lost meanwhile was detached by the reconciler (worker_id
      // null, paused_from retrying), so worker_id decides, not paused_from alone.
      set: sql`status = (case when worker_id is not null then 'running' else coalesce(paused_from, 'queued') end)::task_status,
        paused_from = null, paused_at = null`,
      where: sql`id = any(${ids}::bigint[]) and status = 'paused'`,
    },
    details: sql`${details}::text || case when status = 'running' then ' (attempt ' || attempts || ' continues)' else '' end`,
    enqueue: sql<boolean>`status in ('queued', 'retrying')`,
    notify: { channel: PAUSE_CHANNEL, payload: sql<string>`id::text || ':running'`, when: sql<boolean>`status = 'running'` },
  }).execute(db);
  return rows;
}
