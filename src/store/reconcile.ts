import { sql, type Kysely } from "kysely";
import type { Database, TaskRow } from "./schema.js";
import { forceUnlockWorkers } from "./jobs.js";
import { forcing, rescueLostAttempts, type LostAttempts } from "./lifecycle/index.js";

/** How the reconciler judges a worker process dead (issue 17). */
export interface DeathRule {
  /** TASK_LEASE_MS: a worker (or attempt) silent for this long is lost. */
  leaseMs: number;
  /**
   * When this reconciler started, on the database's clock. Together with pg_postmaster_start_time()
   * it bounds what a lease is counted from: silence while the database or the reconciler was down
   * says nothing about the workers, so the lease is counted from when both were last up.
   */
  since: Date;
  /** Workers known to have exited (their liveness lock is free): dead now, whatever their lease. */
  exited: string[];
}

/**
 * The moment a lease is counted from: the later of the last heartbeat, the last PostgreSQL start,
 * and the reconciler's own start. (SQL fragment; `column` is a heartbeat column.)
 */
function leaseStart(column: string, since: Date) {
  return sql`greatest(coalesce(${sql.ref(column)}, '-infinity'::timestamptz), pg_postmaster_start_time(), ${since}::timestamptz)`;
}

/**
 * Forgets the worker processes that are dead: exited (their liveness lock is free) or silent for
 * longer than the lease (see DeathRule), and releases the graphile-worker locks they held (a cron
 * job they were running: it becomes available to other workers at once). Their task attempts are
 * settled by settleLostAttempts. If such a process is in fact alive, nothing is run twice: every
 * claim and outcome is a guarded update, and the worker aborts an attempt as soon as its heartbeat
 * shows the attempt is no longer its own.
 */
export async function releaseDeadWorkers(db: Kysely<Database>, rule: DeathRule): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`
    with dead as (
      delete from workers
      where id = any(${rule.exited}::text[])
        or ${leaseStart("heartbeat_at", rule.since)} < now() - make_interval(secs => ${rule.leaseMs / 1000})
      returning id, graphile_ids
    ),
    released as (${forceUnlockWorkers(sql`array(select distinct unnest(graphile_ids) from dead)`)})
    select dead.id from dead ${forcing("released")}
  `.execute(db);
  return rows.map((r) => r.id);
}

/**
 * Rescues attempts whose worker is dead (lifecycle event `rescue`): it exited (`dead`, from
 * releaseDeadWorkers, or `exited`) or the attempt's heartbeat is older than the lease (counted as
 * DeathRule says). At most `limit` per call.
 */
export async function settleLostAttempts(db: Kysely<Database>, rule: DeathRule & { dead: string[] }, limit: number): Promise<TaskRow[]> {
  return rescueLostAttempts(db, lostAttempts(rule, limit));
}

/** The attempts settleLostAttempts takes, as the rescue statement's condition. */
export function lostAttempts(rule: DeathRule & { dead: string[] }, limit: number): LostAttempts {
  return {
    lost: sql<boolean>`(worker_id = any(${rule.dead}::text[])
      or ${leaseStart("heartbeat_at", rule.since)} < now() - make_interval(secs => ${rule.leaseMs / 1000}))`,
    exited: rule.dead,
    lease: `${Math.round(rule.leaseMs / 1000)}s`,
    limit,
  };
}
