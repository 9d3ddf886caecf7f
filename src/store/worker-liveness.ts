import { sql, type Kysely } from "kysely";
import pg from "pg";
import { Backoff, sleep } from "../backoff.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import { connectClient } from "./db.js";
import type { Database } from "./schema.js";

/** The first key of every worker's advisory lock ('task' in ASCII); the second is workers.lock_key. */
export const WORKER_LOCK_SPACE = 1952543595;

/** A worker process's liveness lock, held for as long as the process lives. */
export interface WorkerLock {
  /** Resolves once the lock is held and the worker's row registered (waits while PostgreSQL is away). */
  ready: Promise<void>;
  close(): Promise<void>;
}

/**
 * Holds a session-level advisory lock for a worker process on a connection of its own, and
 * registers the process in `workers` with the lock's key. PostgreSQL releases the lock when the
 * connection closes: when the process dies (kill -9, out of memory, crash), at once. When the
 * connection is lost while the process lives (PostgreSQL restarting, a network cut), it reconnects
 * and takes a new lock; `onRelocked` then runs, so the worker can check at once which attempts are
 * still its own (a reconciler may have judged it dead in between).
 */
export function holdWorkerLock(connectionString: string, workerId: string, logger: Logger, onRelocked: () => void): WorkerLock {
  let stopped = false;
  /** Ends a reconnection wait at close. */
  const closing = new AbortController();
  let client: pg.Client | undefined;
  let markReady: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  const loop = async () => {
    let first = true;
    // Reconnect quickly: a reconciler treats a lock that stays free for a moment as a dead process.
    const reconnects = new Backoff({ baseMs: 100, maxMs: 2_000 });
    while (!stopped) {
      const c = new pg.Client({ connectionString, application_name: `task-service worker lock ${workerId}`, keepAlive: true, connectionTimeoutMillis: 5_000 });
      client = c;
      try {
        const ended = new Promise<void>((resolve) => {
          c.once("error", (err) => {
            if (!stopped) logger.warn({ err: err.message }, "worker lock connection lost");
            resolve();
          });
          c.once("end", () => resolve());
        });
        await connectClient(c);
        // A fresh key each time: the old one might still look held while PostgreSQL notices the old socket is gone.
        const { rows } = await c.query<{ key: number }>(
          `select key from (select nextval('worker_lock_keys')::int as key) k where pg_try_advisory_lock($1, key)`,
          [WORKER_LOCK_SPACE],
        );
        if (rows.length === 0) throw new Error("could not take a worker lock");
        await c.query(
          `insert into workers (id, lock_key, locked_at) values ($1, $2, now())
           on conflict (id) do update set lock_key = excluded.lock_key, locked_at = excluded.locked_at, heartbeat_at = now()`,
          [workerId, rows[0]!.key],
        );
        reconnects.succeeded();
        if (first) markReady();
        else onRelocked();
        first = false;
        await ended;
      } catch (err) {
        if (!stopped) logger.warn({ err: errorMessage(err) }, "cannot take the worker lock; retrying");
      }
      await c.end().catch(() => undefined);
      if (!stopped) await sleep(reconnects.failed(), closing.signal);
    }
  };
  const done = loop();
  return {
    ready,
    async close() {
      stopped = true;
      closing.abort();
      markReady();
      await client?.end().catch(() => undefined);
      await done;
    },
  };
}

/**
 * The worker processes whose liveness lock is free although they took it since PostgreSQL last
 * started: their connection is gone, which (the database being up) means the process died.
 * Workers whose lock predates the last PostgreSQL start are not judged here (they may still be
 * reconnecting); the lease rule covers them.
 */
export async function workersWithFreeLocks(db: Kysely<Database>): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`
    select w.id from workers w
    where w.lock_key is not null and w.locked_at > pg_postmaster_start_time()
      and not exists (
        select 1 from pg_locks l
        where l.locktype = 'advisory' and l.granted and l.objsubid = 2
          and l.database = (select oid from pg_database where datname = current_database())
          and l.classid = ${WORKER_LOCK_SPACE}::bigint::oid and l.objid = w.lock_key::bigint::oid)
  `.execute(db);
  return rows.map((r) => r.id);
}

/** The database's clock now (a reconciler's start is measured on it). */
export async function databaseNow(db: Kysely<Database>): Promise<Date> {
  const { rows } = await sql<{ now: Date }>`select now() as now`.execute(db);
  return rows[0]!.now;
}

/**
 * Of the given worker ids, those whose process is alive: its liveness lock is held now. A worker
 * that stopped (cleanly, or killed) holds no lock, whether or not its row is still there.
 */
export async function liveWorkers(db: Kysely<Database>, workerIds: string[]): Promise<Set<string>> {
  if (workerIds.length === 0) return new Set();
  const { rows } = await sql<{ id: string }>`
    select w.id from workers w
    where w.id = any(${workerIds}::text[]) and w.lock_key is not null
      and exists (
        select 1 from pg_locks l
        where l.locktype = 'advisory' and l.granted and l.objsubid = 2
          and l.database = (select oid from pg_database where datname = current_database())
          and l.classid = ${WORKER_LOCK_SPACE}::bigint::oid and l.objid = w.lock_key::bigint::oid)
  `.execute(db);
  return new Set(rows.map((r) => r.id));
}
