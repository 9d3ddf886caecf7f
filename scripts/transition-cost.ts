/**
 * Measures the two ways of giving state transitions one owner, on an embedded PostgreSQL:
 * a statement built by src/store/lifecycle/statement.ts (guarded UPDATE + history INSERT in one CTE
 * statement) against a trigger that writes the history row on every status change (the UPDATE
 * sets a details column the trigger copies). Prints transitions per second for each.
 * Usage: npx tsx scripts/transition-cost.ts [--n 20000]
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { startEmbeddedPostgres } from "../src/embedded-postgres.js";
import { createLogger } from "../src/logger.js";

const N = Number(process.argv[process.argv.indexOf("--n") + 1]) || 20_000;
const logger = createLogger("silent");
const dir = await mkdtemp(path.join(os.tmpdir(), "transition-cost-"));
const cluster = await startEmbeddedPostgres(dir, logger);
const client = new pg.Client({ connectionString: cluster.url });
await client.connect();
try {
  await client.query(`
    create table t (id bigint primary key, status text not null, attempts int not null default 0, details text, updated_at timestamptz);
    create table h (id bigint generated always as identity primary key, task_id bigint not null, status text not null, attempt int not null, details text not null, created_at timestamptz not null default now());
    create function t_history() returns trigger language plpgsql as $$
    begin
      insert into h (task_id, status, attempt, details) values (new.id, new.status, new.attempts, new.details);
      return null;
    end $$;
  `);
  // The two ways, as statements over loop variable i (the task id).
  const status = "(case when i % 2 = 1 then 'running' else 'retrying' end)";
  const viaBuilder = `with u as (update t set status = ${status}, attempts = attempts + 1, updated_at = now() where id = i returning *, 'moved to ' || status as d)
    insert into h (task_id, status, attempt, details) select id, status, attempts, d from u`;
  const viaTrigger = `update t set status = ${status}, attempts = attempts + 1, details = 'moved to ' || ${status}, updated_at = now() where id = i`;

  // Timed inside PostgreSQL (a PL/pgSQL loop, which prepares the statement once, like the workers'
  // prepared statements), so client round trips, which cost the same either way and dominate on a
  // busy machine, do not drown the difference.
  async function measure(name: string, statement: string): Promise<number> {
    await client.query("truncate t, h");
    await client.query("insert into t (id, status) select g, 'queued' from generate_series(1, $1) g", [N]);
    await client.query("vacuum analyze t");
    await client.query(`create or replace function pg_temp.run_n(n int) returns double precision language plpgsql as $fn$
      declare started timestamptz := clock_timestamp();
      begin
        for i in 1..n loop ${statement}; end loop;
        return extract(epoch from clock_timestamp() - started);
      end $fn$`);
    const { rows: timed } = await client.query("select pg_temp.run_n($1) as seconds", [N]);
    const { rows } = await client.query("select count(*)::int as n from h");
    if (rows[0].n !== N) throw new Error(`${name}: ${rows[0].n} history rows for ${N} transitions`);
    return N / timed[0].seconds;
  }

  // Alternate runs so cache warm-up favours neither.
  const results: Record<string, number[]> = { builder: [], trigger: [] };
  for (let round = 0; round < 3; round++) {
    await client.query("drop trigger if exists t_history on t");
    results.builder!.push(await measure("builder", viaBuilder));
    await client.query("create trigger t_history after update of status on t for each row when (old.status is distinct from new.status) execute function t_history()");
    results.trigger!.push(await measure("trigger", viaTrigger));
  }
  for (const [name, runs] of Object.entries(results)) {
    const best = Math.max(...runs);
    console.log(`${name.padEnd(8)} ${Math.round(best)} transitions/s (best of ${runs.map((r) => Math.round(r)).join(", ")})`);
  }
} finally {
  await client.end();
  await cluster.stop();
  await rm(dir, { recursive: true, force: true });
}
