import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../src/embedded-postgres.js";
import { createLogger } from "../src/logger.js";
import { openDb } from "../src/store/db.js";
import { migrate } from "../src/store/migrate.js";
import { PLAYGROUND_DATABASE, TEMPLATE_DATABASE } from "./helpers/database.js";
import { ensureDatabase } from "../src/embedded-postgres.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** URL template: replace the database name to reach any database on the test cluster. */
    pgAdminUrl: string;
  }
}

let cluster: EmbeddedDatabase | undefined;
let dir: string | undefined;

/**
 * One real PostgreSQL for the whole run (embedded-postgres, so nothing needs installing), with a
 * template database migrated once; each test file clones its own database from it.
 */
export async function setup(project: TestProject): Promise<void> {
  dir = await mkdtemp(path.join(os.tmpdir(), "task-test-"));
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? "warn");
  cluster = await startEmbeddedPostgres(dir, logger);
  await ensureDatabase(cluster.urlFor("postgres"), TEMPLATE_DATABASE);
  // run_query's default target in tests.
  await ensureDatabase(cluster.urlFor("postgres"), PLAYGROUND_DATABASE);
  const db = openDb({ connectionString: cluster.urlFor(TEMPLATE_DATABASE) }, logger);
  try {
    await migrate(db, logger);
  } finally {
    await db.close();
  }
  project.provide("pgAdminUrl", cluster.urlFor("postgres"));
}

export async function teardown(): Promise<void> {
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}
