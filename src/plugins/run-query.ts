import pg from "pg";
import Cursor from "pg-cursor";
import type { Logger } from "../logger.js";
import { classifyFailure, isPermanentSqlError } from "./failure-class.js";
import { readWithBudget } from "./row-budget.js";
import { runQueryParameters } from "./schemas.js";
import type { Plugin } from "./types.js";

/** The databases run_query may reach, by name; requests name a target, never a connection string. */
export interface RunQueryOptions {
  targets: Record<string, string>;
  writableTargets: string[];
  /** Upper bound per statement, enforced from outside the session too (the task's own timeout applies as well). */
  statementTimeoutMs: number;
  /** Connections per target; as many as the worker runs tasks at once. */
  poolSize: number;
  /** Most JSON bytes of rows kept in a result; the rest is counted, not kept. */
  maxResultBytes: number;
  /** Most bytes read from the server per statement; past it the row count is a lower bound. */
  maxReadBytes: number;
  logger: Logger;
}

/**
 * A cursor whose opening messages (parse, bind, describe, and the first read's execute, which the
 * caller sends in the same tick) leave in one write, as pg's own Query corks its extended-protocol
 * messages: pg-cursor does not, and each message was a write of its own, a system call and a
 * wake-up of PostgreSQL each (six for a statement's start).
 */
function corkedCursor(sql: string, values: unknown[]): Cursor {
  const cursor = new Cursor(sql, values);
  const submit = cursor.submit.bind(cursor);
  cursor.submit = (connection) => {
    const stream = (connection as unknown as { stream?: { cork?(): void; uncork?(): void } }).stream;
    stream?.cork?.();
    try {
      submit(connection);
    } finally {
      // Hazard: a stream left corked sends nothing again and the client hangs; the uncork is
      // scheduled whatever happened, and runs once this tick's writes (the first read's) are in.
      process.nextTick(() => stream?.uncork?.());
    }
  };
  return cursor;
}

/** After cancelling an overdue statement, how long to wait before terminating its backend. */
const TERMINATE_AFTER_MS = 5_000;

/** A run_query plugin plus a way to close its target pools. */
export type RunQueryPlugin = Plugin<ReturnType<typeof runQueryParameters>> & { close(): Promise<void> };

/** The statement ran past the configured limit and was cancelled from outside its session. */
class StatementDeadlineError extends Error {
  override name = "StatementDeadlineError";
}

/**
 * Runs one statement against a named target in a (by default read-only) transaction with a
 * statement timeout, streaming rows through a cursor under a byte budget so a huge result cannot
 * exhaust memory: the first rows that fit max_rows and the result cap are kept, the rest counted.
 *
 * The statement cannot outlive its limit even if it changes statement_timeout itself: a timer
 * cancels its backend from another connection. Abort cancels it the same way. Before a connection
 * goes back to the pool, DISCARD ALL drops whatever session state the statement left (settings,
 * advisory locks, temporary tables), so one task cannot influence the next.
 */
export function runQueryPlugin(options: RunQueryOptions): RunQueryPlugin {
  const pools = new Map<string, pg.Pool>();
  const poolFor = (target: string) => {
    let pool = pools.get(target);
    if (!pool) {
      pool = new pg.Pool({ connectionString: options.targets[target], max: options.poolSize, connectionTimeoutMillis: 10_000, application_name: "task-service run_query" });
      pool.on("error", (err) => options.logger.warn({ target, err: err.message }, "run_query connection failed"));
      // A statement can end its own connection (pg_terminate_backend(pg_backend_pid())); the socket
      // error then reaches a checked-out client after its query failed, and an 'error' event nobody
      // listens to would crash the worker process. The attempt has failed already; log and go on.
      pool.on("connect", (client) => client.on("error", (err) => options.logger.warn({ target, err: err.message }, "run_query connection lost")));
      pools.set(target, pool);
    }
    return pool;
  };
  /**
   * Signals a backend from a connection of its own, not the pool's: when every pooled connection
   * is busy with a runaway statement, a cancel must not queue behind them.
   */
  const signalBackend = async (target: string, pid: number, how: "cancel" | "terminate") => {
    const admin = new pg.Client({ connectionString: options.targets[target], connectionTimeoutMillis: 10_000, application_name: "task-service run_query cancel" });
    admin.on("error", () => undefined); // reported below, or irrelevant once the signal is sent
    try {
      await admin.connect();
      await admin.query(how === "cancel" ? "select pg_cancel_backend($1)" : "select pg_terminate_backend($1)", [pid]);
    } catch (err) {
      options.logger.warn({ target, pid, err: (err as Error).message }, `could not ${how} a run_query backend`);
    } finally {
      await admin.end().catch(() => undefined);
    }
  };
  return {
    name: "run_query",
    description: "Runs one SQL statement against a named target database, read-only by default, with a row cap.",
    parameters: runQueryParameters(Object.keys(options.targets), options.writableTargets),
    defaults: { timeoutMs: 30_000, maxAttempts: 3 },
    async run(params, ctx) {
      ctx.signal.throwIfAborted();
      const pool = poolFor(params.target);
      const client = await pool.connect();
      const pid = (client as unknown as { processID: number }).processID;
      // Between cursor reads the backend is idle and a cancel finds nothing to cancel, so abort and
      // the deadline also stop the reading loop.
      const stop = new AbortController();
      // Signals in flight; awaited before the connection is reused, so a late cancel cannot hit
      // the next task's statement.
      const signals: Promise<void>[] = [];
      let cancelled = false;
      const cancel = () => {
        stop.abort();
        if (cancelled) return;
        cancelled = true;
        signals.push(signalBackend(params.target, pid, "cancel"));
      };
      ctx.signal.addEventListener("abort", cancel, { once: true });
      const onClientError = (err: Error) => options.logger.warn({ taskId: ctx.taskId, pid, err: err.message }, "run_query connection failed");
      client.on("error", onClientError);
      let overdue = false;
      let terminateTimer: NodeJS.Timeout | undefined;
      const deadline = setTimeout(() => {
        overdue = true;
        options.logger.warn({ taskId: ctx.taskId, pid, limitMs: options.statementTimeoutMs }, "run_query statement overran its limit: cancelling it");
        cancel();
        // A statement that ignores the cancel (a loop that never checks for interrupts) loses its session.
        terminateTimer = setTimeout(() => signals.push(signalBackend(params.target, pid, "terminate")), TERMINATE_AFTER_MS);
      }, options.statementTimeoutMs);
      let broken: Error | undefined;
      try {
        // An abort while we waited for a connection fired before the listener existed.
        ctx.signal.throwIfAborted();
        // One round trip: the timeout is an integer from configuration, never request data.
        const timeoutMs = Math.floor(options.statementTimeoutMs);
        // The attempt's traceparent as the session's application_name (pg_stat_activity, logs with
        // %a), so database-side traces and logs join it; a W3C traceparent is 55 characters of hex
        // and dashes, safe to quote and under the name's 63 bytes. Set local: it ends with the transaction.
        const traced = ctx.traceparent && /^[0-9a-f-]{55}$/.test(ctx.traceparent) ? `; set local application_name = '${ctx.traceparent}'` : "";
        await client.query(`${params.read_only ? "begin read only" : "begin"}; set local statement_timeout = ${timeoutMs}${traced}`);
        // A server-side cancel between statements would cancel nothing.
        ctx.signal.throwIfAborted();
        const cursor = client.query(corkedCursor(params.sql, params.params));
        let read;
        try {
          read = await readWithBudget(cursor, { maxRows: params.max_rows, maxResultBytes: options.maxResultBytes, maxReadBytes: options.maxReadBytes }, stop.signal);
        } finally {
          // Hazard: until the cursor is closed it stays the client's active query, and any later
          // query on this client (commit, rollback) would wait behind it forever. A cursor that
          // failed has already given the connection back; closing it would send a stray Sync. One
          // read to the end has too (it closed its portal and synced): closing it would only wait
          // for a turn of the event loop, a millisecond or more with ten attempts running.
          const state = (cursor as unknown as { state: string }).state;
          if (state !== "error" && state !== "done") await cursor.close().catch(() => undefined);
        }
        await client.query("commit");
        return {
          target: params.target,
          row_count: read.rowCount,
          row_count_complete: read.countComplete,
          columns: read.columns,
          rows: read.rows,
          truncated: !read.countComplete || read.rowCount > read.rows.length,
        };
      } catch (err) {
        await client.query("rollback").catch((e: unknown) => (broken = e as Error));
        if (ctx.signal.aborted) throw ctx.signal.reason;
        if (overdue) throw new StatementDeadlineError(`statement timeout: the statement ran past ${options.statementTimeoutMs} ms and was cancelled`);
        throw classifyFailure(err, isPermanentSqlError);
      } finally {
        clearTimeout(deadline);
        clearTimeout(terminateTimer);
        ctx.signal.removeEventListener("abort", cancel);
        await Promise.all(signals);
        if (!broken) await client.query("discard all").catch((e: unknown) => (broken = e as Error));
        client.off("error", onClientError);
        // A connection whose session could not be reset is closed, not reused.
        client.release(broken);
      }
    },
    async close() {
      await Promise.all([...pools.values()].map((p) => p.end()));
      pools.clear();
    },
  };
}
