import { Kysely, PostgresDialect, type CompiledQuery, type RawBuilder } from "kysely";
import pg from "pg";
import { retry, type BackoffPolicy } from "../backoff.js";
import { errorMessage, isDatabaseUnavailable } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Database } from "./schema.js";

/** A Kysely handle plus the pool under it (graphile-worker and LISTEN need the raw pool). */
export interface Db {
  kysely: Kysely<Database>;
  pool: pg.Pool;
  close(): Promise<void>;
}


/** Options for a pool. */
export interface DbOptions {
  connectionString: string;
  max?: number;
  /** Fail a request fast when PostgreSQL is unreachable instead of hanging. */
  connectionTimeoutMillis?: number;
  /** Upper bound for any statement the service runs. */
  statementTimeoutMillis?: number;
  applicationName?: string;
}

/** Opens a pool. Idle-client errors (PostgreSQL restarting) are logged, never fatal. */
export function openDb(options: DbOptions, logger: Logger): Db {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMillis ?? 5_000,
    statement_timeout: options.statementTimeoutMillis ?? 60_000,
    application_name: options.applicationName ?? "task-service",
  });
  // A client error while PostgreSQL restarts must not crash the process; the pool replaces it.
  // pool.end() resolves before the sockets close, so errors after close() are expected noise.
  let closing = false;
  const onError = (what: string) => (err: Error) => {
    if (!closing) logger.warn({ err: err.message }, what);
  };
  pool.on("error", onError("idle database connection failed"));
  pool.on("connect", (client) => client.on("error", onError("database connection failed")));
  const kysely = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  let closed: Promise<void> | undefined;
  return {
    kysely,
    pool,
    // Kysely ends the pool only if it ever used it; graphile-worker may be its only user.
    close: () =>
      (closed ??= ((closing = true), kysely.destroy()).then(async () => {
        if (!pool.ended) await pool.end();
      })),
  };
}

/** How long a step waits between tries while PostgreSQL is unreachable (restarting, failing over). */
export const OUTAGE_BACKOFF: BackoffPolicy = { baseMs: 250, maxMs: 5_000 };

/**
 * Runs `step`, retrying with capped exponential backoff while PostgreSQL is unreachable (restarting,
 * failing over), until `patienceMs` has passed; any other error, or running out of patience,
 * propagates.
 */
export function retryWhileUnavailable<T>(step: () => Promise<T>, what: string, patienceMs: number, logger: Logger): Promise<T> {
  return retry(step, {
    policy: OUTAGE_BACKOFF,
    retryIf: isDatabaseUnavailable,
    patienceMs,
    onRetry: (err, retryInMs) => logger.warn({ err: errorMessage(err), retryInMs }, `database unavailable while ${what}; retrying`),
  });
}

/**
 * Connects a dedicated client (a listener, a lock holder). HAZARD: pg never settles connect() when
 * end() is called while it connects (closing a process just after it started), which would hang the
 * close for ever: this rejects as soon as the client has ended instead.
 */
export function connectClient(client: pg.Client): Promise<void> {
  const connecting = client.connect();
  connecting.catch(() => undefined); // settled or not, the race below reports it
  const ended = new Promise<never>((_, reject) => client.once("end", () => reject(new Error("the connection was closed while connecting"))));
  ended.catch(() => undefined);
  return Promise.race([connecting, ended]).then(() => undefined);
}

/** SQLSTATEs of a statement PostgreSQL aborted to break a conflict: deadlock_detected, serialization_failure. */
const CONFLICT_CODES = new Set(["40P01", "40001"]);

/** Whether PostgreSQL aborted the statement to break a deadlock (or a serialization conflict): running it again may succeed. */
export function isConflict(err: unknown): boolean {
  return err instanceof Error && CONFLICT_CODES.has((err as { code?: unknown }).code as string);
}

/**
 * Runs `step` again, up to `attempts` times in all and after a short random pause, when PostgreSQL
 * aborted it to break a deadlock: two multi-row statements that lock the same task rows in another
 * order (a bulk action's batch and a worker's batched claim, say). The step must be one guarded
 * statement (or safe to repeat): an aborted statement changed nothing.
 */
export function retryOnConflict<T>(step: () => Promise<T>, attempts = 5): Promise<T> {
  return retry(step, { policy: CONFLICT_BACKOFF, retryIf: isConflict, attempts });
}

/** A short random pause: the statement that won the conflict is usually done in milliseconds. */
const CONFLICT_BACKOFF: BackoffPolicy = { baseMs: 20, maxMs: 200, jitter: true };

/**
 * Runs a statement written with Kysely's sql tag as a named prepared statement, so PostgreSQL
 * parses and plans it once per connection rather than on every call. Worth it for the statements
 * run once per task attempt: pg_stat_statements showed planning them cost as much as running them.
 * The name must be unique to the statement's text.
 */
export async function queryPrepared<R>(db: Db, name: string, query: RawBuilder<R>): Promise<R[]> {
  const compiled = query.compile(db.kysely);
  const result = await db.pool.query({ name, text: compiled.sql, values: compiled.parameters as unknown[] });
  return result.rows as R[];
}

/** Runs a compiled statement on the transaction's connection; with a name, as a prepared statement (see queryPrepared). */
export type PreparedQuery = <R>(query: CompiledQuery<R>, name?: string) => Promise<R[]>;

/**
 * Runs `body` in one transaction on one pooled connection, whose statements may be named prepared
 * statements (queryPrepared's gain, kept for a hot write that must commit with another: a create and
 * its audit row). Rolls back if `body` throws.
 */
export async function inPreparedTransaction<T>(db: Db, body: (query: PreparedQuery) => Promise<T>): Promise<T> {
  const client = await db.pool.connect();
  let broken: Error | undefined;
  try {
    await client.query("begin");
    const query: PreparedQuery = async <R>(compiled: CompiledQuery<R>, name?: string) =>
      (await client.query({ name, text: compiled.sql, values: compiled.parameters as unknown[] })).rows as R[];
    const result = await body(query);
    await client.query("commit");
    return result;
  } catch (err) {
    // A connection that cannot even roll back is not handed to the next caller.
    await client.query("rollback").catch((e: unknown) => (broken = e instanceof Error ? e : new Error(String(e))));
    throw err;
  } finally {
    client.release(broken);
  }
}
