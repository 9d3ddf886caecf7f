/**
 * A real plugin in the benchmark: run_query tasks of `select 1`, pre-created and drained by a
 * `serve -n N` of their own, against a bare `pg` pool running `select 1` at the same concurrency on
 * the same database in the same run. What separates the two is what an attempt costs around its
 * statement (claim, transaction, timeout, session reset, outcome): see docs/design/hot-path.md.
 */
import pg from "pg";
import type { Client } from "@connectrpc/connect";
import type { TaskService } from "../../src/gen/task/v1/task_pb.js";
import type { Db } from "../../src/store/db.js";
import { createBulk, drainRate, lastTaskId, untilDrained } from "./ours.js";
import { startServeProcess } from "./processes.js";

/** The run_query target the bench's processes are given: the bench's own database. */
export const QUERY_TARGET = "bench";

/** Environment giving a server or worker process the bench's run_query target. */
export function queryTargetEnv(databaseUrl: string): Record<string, string> {
  return { TASK_QUERY_TARGETS: `${QUERY_TARGET}=${databaseUrl}` };
}

/** `select 1` through a bare pool of `concurrency` connections, that many in flight; statements per second. */
export async function bareSelectOne(databaseUrl: string, total: number, concurrency: number): Promise<number> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: concurrency });
  try {
    // Connected first, as run_query's pool is after its first attempts.
    await Promise.all(Array.from({ length: concurrency }, () => pool.query("select 1")));
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < total) {
          next++;
          await pool.query("select 1");
        }
      }),
    );
    return total / ((performance.now() - t0) / 1000);
  } finally {
    await pool.end();
  }
}

/**
 * `total` run_query tasks of `select 1` created (CreateTasks, `batch` a call) with no worker running,
 * then drained by a new `serve -n concurrency`: tasks per second (first start to last finish, on the
 * database's clock) and that process's peak RSS. Throws if any task did not succeed.
 */
export async function queryDrain(
  db: Db,
  client: Client<typeof TaskService>,
  o: { databaseUrl: string; dataDir: string; concurrency: number; total: number; batch: number; registered: (pid: number) => Promise<boolean> },
): Promise<{ perSec: number; serveRssMb: number }> {
  const afterId = await lastTaskId(db);
  await createBulk(client, o.total, o.batch, "query", { type: "run_query", parameters: { target: QUERY_TARGET, sql: "select 1" } });
  const serve = await startServeProcess(o.databaseUrl, o.dataDir, o.concurrency, o.registered, queryTargetEnv(o.databaseUrl));
  try {
    await untilDrained(db);
    const { rows } = await db.pool.query("select count(*) as n, min(id) as id from tasks where id > $1 and status <> 'succeeded'", [afterId]);
    if (Number(rows[0].n) > 0) throw new Error(`${rows[0].n} run_query tasks did not succeed (the first: task ${rows[0].id})`);
    return { perSec: await drainRate(db, afterId), serveRssMb: await serve.peakRssMb() };
  } finally {
    await serve.stop();
  }
}
