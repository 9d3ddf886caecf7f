import pg from "pg";
import Cursor from "pg-cursor";
import type { Logger } from "../logger.js";
import { classifyFailure, isPermanentSqlError } from "./failure-class.js";
import { runQueryParameters } from "./schemas.js";
import type { Plugin } from "./types.js";

/** The databases run_query may reach, by name; requests name a target, never a connection string. */
export interface RunQueryOptions {
  targets: Record<string, string>;
  writableTargets: string[];
  /** Upper bound per statement (the task's own timeout applies too). */
  statementTimeoutMs: number;
  /** Connections per target; as many as the worker runs tasks at once. */
  poolSize: number;
  logger: Logger;
}

const BATCH_ROWS = 1_000;

/** A run_query plugin plus a way to close its target pools. */
export type RunQueryPlugin = Plugin<ReturnType<typeof runQueryParameters>> & { close(): Promise<void> };

/**
 * Runs one statement against a named target in a (by default read-only) transaction with a
 * statement timeout, streaming rows through a cursor so a huge result cannot exhaust memory: the
 * first max_rows are kept, all are counted. Abort cancels the statement on the server.
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
  return {
    name: "run_query",
    description: "Runs one SQL statement against a named target database, read-only by default, with a row cap.",
    parameters: runQueryParameters(Object.keys(options.targets), options.writableTargets),
    defaults: { timeoutMs: 30_000, maxAttempts: 3 },
    async run(params, ctx) {
      ctx.signal.throwIfAborted();
      const pool = poolFor(params.target);
      const client = await pool.connect();
      const cancel = () => {
        // Cancel on the server from another connection; the cursor read then fails and we unwind.
        pool.query("select pg_cancel_backend($1)", [(client as unknown as { processID: number }).processID]).catch(() => undefined);
      };
      ctx.signal.addEventListener("abort", cancel, { once: true });
      let broken: Error | undefined;
      try {
        // An abort while we waited for a connection fired before the listener existed.
        ctx.signal.throwIfAborted();
        // One round trip: the timeout is an integer from configuration, never request data.
        const timeoutMs = Math.floor(options.statementTimeoutMs);
        await client.query(`${params.read_only ? "begin read only" : "begin"}; set local statement_timeout = ${timeoutMs}`);
        // A server-side cancel between statements would cancel nothing.
        ctx.signal.throwIfAborted();
        const cursor = client.query(new Cursor(params.sql, params.params));
        const rows: unknown[] = [];
        let rowCount = 0;
        let columns: string[] = [];
        for (;;) {
          const batch = await cursor.read(BATCH_ROWS);
          if (columns.length === 0 && batch.length > 0) columns = Object.keys(batch[0] as object);
          rowCount += batch.length;
          for (const row of batch) if (rows.length < params.max_rows) rows.push(row);
          if (batch.length < BATCH_ROWS) break;
        }
        // The cursor is exhausted; commit closes its portal.
        await client.query("commit");
        return { target: params.target, row_count: rowCount, columns, rows, truncated: rowCount > rows.length };
      } catch (err) {
        await client.query("rollback").catch((e: unknown) => (broken = e as Error));
        if (ctx.signal.aborted) throw ctx.signal.reason;
        throw classifyFailure(err, isPermanentSqlError);
      } finally {
        ctx.signal.removeEventListener("abort", cancel);
        client.release(broken);
      }
    },
    async close() {
      await Promise.all([...pools.values()].map((p) => p.end()));
      pools.clear();
    },
  };
}
