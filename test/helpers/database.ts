import { randomBytes } from "node:crypto";
import pg from "pg";
import { inject } from "vitest";
import { createLogger, type Logger } from "../../src/logger.js";
import { openDb, type Db } from "../../src/store/db.js";

/** The migrated database every test database is cloned from. */
export const TEMPLATE_DATABASE = "task_template";
/** The database run_query's "playground" target points at in tests. */
export const PLAYGROUND_DATABASE = "playground";

/** A fresh, migrated database of the test's own. */
export interface TestDatabase {
  name: string;
  url: string;
  db: Db;
  logger: Logger;
  /** Closes the pool and drops the database. */
  drop(): Promise<void>;
}

/** The URL of another database on the test cluster. */
export function urlForDatabase(name: string): string {
  const url = new URL(inject("pgAdminUrl"));
  url.pathname = `/${name}`;
  return url.toString();
}

/** Runs one statement as the cluster's admin (create or drop a database). */
export async function adminQuery(text: string): Promise<void> {
  await admin((c) => c.query(text));
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: inject("pgAdminUrl") });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Clones the migrated template into a new database (fast: a file copy inside PostgreSQL). */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `test_${randomBytes(6).toString("hex")}`;
  await admin((c) => c.query(`create database ${name} template ${TEMPLATE_DATABASE}`));
  const url = urlForDatabase(name);
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? "silent");
  const db = openDb({ connectionString: url, max: 10 }, logger);
  return {
    name,
    url,
    db,
    logger,
    async drop() {
      await db.close();
      await admin((c) => c.query(`drop database if exists ${name} with (force)`));
    },
  };
}

/**
 * A migrated database on an embedded PostgreSQL cluster of its own (a few seconds to start), for
 * tests that must not share the cluster with other test files: e.g. a WatchTasks feed, which waits
 * for every writing transaction in the cluster that started before a change to end.
 */
export async function createOwnClusterDatabase(): Promise<TestDatabase> {
  const { mkdtemp, rm } = await import("node:fs/promises");
  const os = await import("node:os");
  const path = await import("node:path");
  const { startEmbeddedPostgres } = await import("../../src/embedded-postgres.js");
  const { migrate } = await import("../../src/store/migrate.js");
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? "silent");
  const dir = await mkdtemp(path.join(os.tmpdir(), "task-own-cluster-"));
  const cluster = await startEmbeddedPostgres(dir, logger);
  const db = openDb({ connectionString: cluster.url, max: 10 }, logger);
  await migrate(db, logger);
  return {
    name: new URL(cluster.url).pathname.slice(1),
    url: cluster.url,
    db,
    logger,
    async drop() {
      await db.close();
      await cluster.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
