/**
 * What the dashboard's reads (migration 0017) cost the write path: the finishes trigger (one delta
 * row per attempt that ends) and the name index (one more index insert per transition). On an
 * embedded PostgreSQL with every migration, runs a task lifecycle (queued -> running -> succeeded,
 * the real guarded UPDATEs' shape) over N fresh tasks inside PostgreSQL, alternating runs with the
 * trigger and index present and absent, and prints the backend's CPU time per lifecycle (CPU
 * time, from /proc, because wall-clock time on a machine shared with other test runs varies more
 * between runs of the same code than the difference measured).
 * Usage: npx tsx scripts/dashboard-write-cost.ts [--n 20000] [--rounds 4]
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { startEmbeddedPostgres } from "../src/embedded-postgres.js";
import { createLogger } from "../src/logger.js";
import { openDb } from "../src/store/db.js";
import { migrate } from "../src/store/migrate.js";

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(`--${name}`) + 1]) || fallback;
const N = arg("n", 20_000);
const ROUNDS = arg("rounds", 4);
const logger = createLogger("silent");
const dir = await mkdtemp(path.join(os.tmpdir(), "dashboard-write-cost-"));
const cluster = await startEmbeddedPostgres(dir, logger);
const db = openDb({ connectionString: cluster.url, max: 3, statementTimeoutMillis: 0 }, logger);
try {
  await migrate(db, logger);
  const q = (text: string) => db.pool.query(text);
  // Timed inside PostgreSQL (a PL/pgSQL loop), so client round trips do not drown the difference.
  await q(`create function lifecycle_ms(n int) returns float8 language plpgsql as $$
    declare first bigint; t0 timestamptz; i bigint;
    begin
      insert into tasks (name, type, parameters, max_attempts, timeout_ms) select 'cost-' || g, 'noop', '{}', 3, 60000 from generate_series(1, n) g;
      select max(id) - n + 1 into first from tasks;
      t0 := clock_timestamp();
      for i in first .. first + n - 1 loop
        update tasks set status = 'running', attempts = attempts + 1, started_at = now(), heartbeat_at = now(), updated_at = now() where id = i and status = 'queued';
        update tasks set status = 'succeeded', finished_at = now(), result = '{"ok": true}', updated_at = now() where id = i and status = 'running';
      end loop;
      return extract(epoch from clock_timestamp() - t0) * 1000;
    end $$`);
  const results: Record<string, number[]> = { with: [], without: [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const variant of round % 2 === 0 ? ["with", "without"] : ["without", "with"]) {
      if (variant === "without") {
        await q("alter table tasks disable trigger task_finishes_update");
        await q("drop index if exists tasks_name_pattern_idx");
      } else {
        await q("alter table tasks enable trigger task_finishes_update");
        await q("create index if not exists tasks_name_pattern_idx on tasks (name text_pattern_ops)");
      }
      // Each run starts from the same empty tables, so runs compare like with like.
      await q("truncate tasks cascade");
      await q("truncate task_finish_deltas, task_finishes, task_count_deltas, task_counts");
      await q("vacuum analyze tasks");
      const client = await db.pool.connect();
      try {
        const { rows } = await client.query("select pg_backend_pid() as pid");
        const before = await cpuMs(rows[0].pid);
        await client.query(`select lifecycle_ms(${N})`);
        results[variant]!.push((await cpuMs(rows[0].pid)) - before);
      } finally {
        client.release();
      }
    }
  }
  async function cpuMs(pid: number): Promise<number> {
    // utime and stime, fields 14 and 15 of /proc/<pid>/stat, in clock ticks (100 per second).
    const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  for (const [variant, ms] of Object.entries(results)) {
    console.log(`${variant.padEnd(8)} trigger and name index: ${((median(ms) / N) * 1000).toFixed(1)} µs of backend CPU per lifecycle (median of ${ms.map((m) => ((m / N) * 1000).toFixed(1)).join(", ")})`);
  }
} finally {
  await db.close();
  await cluster.stop();
  await rm(dir, { recursive: true, force: true });
}
