import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/logger.js";
import { openDb, type Db } from "../src/store/db.js";
import { migrate, migrationsDir } from "../src/store/migrate.js";
import { adminQuery, createTestDatabase, urlForDatabase, type TestDatabase } from "./helpers/database.js";

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? "silent");
const ourMigrations = readdirSync(migrationsDir)
  .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
  .map((f) => f.replace(/\.sql$/, ""))
  .sort();

/** What the schema of a database holds: our tables, graphile-worker's schema, and the migration logs. */
async function schemaOf(db: Db) {
  const tables = await db.pool.query<{ table_name: string }>(
    "select table_name from information_schema.tables where table_schema = 'public' and table_name in ('tasks', 'task_history', 'task_logs') order by table_name",
  );
  const graphile = await db.pool.query<{ n: string }>("select count(*) as n from pg_namespace where nspname = 'graphile_worker'");
  const ours = await db.pool.query<{ name: string }>("select name from kysely_migration order by name");
  const theirs = await db.pool.query<{ id: number; n: string }>("select id, count(*) over (partition by id) as n from graphile_worker.migrations order by id");
  return {
    tables: tables.rows.map((r) => r.table_name),
    graphileSchemas: Number(graphile.rows[0]!.n),
    ourMigrations: ours.rows.map((r) => r.name),
    graphileMigrations: theirs.rows.map((r) => r.id),
    graphileDuplicates: theirs.rows.filter((r) => Number(r.n) > 1).length,
  };
}

describe("migrate on an up-to-date database", () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => database?.drop());

  it("applies nothing and changes nothing", async () => {
    const before = await schemaOf(database.db);
    expect(before.ourMigrations).toEqual(ourMigrations);
    const result = await migrate(database.db, logger);
    expect(result.applied).toEqual([]);
    expect(await schemaOf(database.db)).toEqual(before);
  });
});

describe("concurrent migrate on a fresh database", () => {
  const name = `fresh_${randomBytes(6).toString("hex")}`;
  const pools: Db[] = [];
  beforeAll(async () => {
    await adminQuery(`create database ${name}`);
  });
  afterAll(async () => {
    await Promise.all(pools.map((p) => p.close()));
    await adminQuery(`drop database if exists ${name} with (force)`);
  });

  it("lets both processes succeed and builds the schema once", async () => {
    // Two pools, as two processes starting at the same time would have.
    for (let i = 0; i < 2; i++) pools.push(openDb({ connectionString: urlForDatabase(name), max: 4, applicationName: `migrate-${i}` }, logger));
    const empty = await pools[0]!.pool.query("select count(*)::int as n from information_schema.tables where table_schema = 'public'");
    expect(empty.rows[0].n).toBe(0);

    const results = await Promise.all(pools.map((db) => migrate(db, logger)));
    // Exactly one of them applied each migration; the other found nothing to do.
    expect(results.flatMap((r) => r.applied).sort()).toEqual(ourMigrations);
    expect(results.filter((r) => r.applied.length === 0)).toHaveLength(1);

    const schema = await schemaOf(pools[0]!);
    expect(schema.tables).toEqual(["task_history", "task_logs", "tasks"]);
    expect(schema.graphileSchemas).toBe(1);
    expect(schema.ourMigrations).toEqual(ourMigrations);
    expect(schema.graphileMigrations.length).toBeGreaterThan(0);
    expect(schema.graphileDuplicates).toBe(0);
    // graphile-worker's functions work: the schema is usable, not half-built.
    const job = await pools[1]!.pool.query("select key from graphile_worker.add_job('run_task', '{}'::json, job_key := 'probe')");
    expect(job.rows[0].key).toBe("probe");

    // And a third run afterwards is a no-op.
    expect((await migrate(pools[1]!, logger)).applied).toEqual([]);
  });
});
