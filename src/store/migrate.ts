import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { runMigrations } from "graphile-worker";
import { Migrator, sql, type Migration, type MigrationProvider } from "kysely";
import type { Logger } from "../logger.js";
import { graphileLogger } from "../graphile-logger.js";
import type { Db } from "./db.js";

/** The folder of numbered SQL migrations shipped with the service. */
export const migrationsDir = fileURLToPath(new URL("../../migrations/", import.meta.url));

// One session-level advisory lock around both migration sets, so two processes starting at once
// run them one after the other. The key is arbitrary but fixed ("task" in ASCII).
const MIGRATION_LOCK_KEY = 0x7461736b;

/** Reads migrations/NNNN_name.sql files; each runs as one migration, in name order. */
class SqlFileMigrationProvider implements MigrationProvider {
  constructor(private readonly dir: string) {}

  async getMigrations(): Promise<Record<string, Migration>> {
    const files = (await readdir(this.dir)).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort();
    const migrations: Record<string, Migration> = {};
    for (const file of files) {
      const text = await readFile(path.join(this.dir, file), "utf8");
      migrations[file.replace(/\.sql$/, "")] = { up: async (db) => void (await sql.raw(text).execute(db)) };
    }
    return migrations;
  }
}

/** What a migration run applied. */
export interface MigrateResult {
  applied: string[];
}

/**
 * Brings the database up to date: graphile-worker's schema first (our SQL calls its functions), then
 * ours. Safe to run concurrently from several processes and any number of times. `through` (a
 * migration's name, e.g. "0019_api_tokens") stops after that one: a database at an earlier schema,
 * for tests and measurements of a later migration (forward only).
 */
export async function migrate(db: Db, logger: Logger, dir = migrationsDir, through?: string): Promise<MigrateResult> {
  const lockClient = await db.pool.connect();
  try {
    await lockClient.query("select pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
    await runMigrations({ pgPool: db.pool, logger: graphileLogger(logger) });
    const migrator = new Migrator({ db: db.kysely, provider: new SqlFileMigrationProvider(dir) });
    // One transaction per migration, not one for all that are pending: an enum value added by one
    // migration (ALTER TYPE ... ADD VALUE) cannot be used before it commits, and a later migration
    // may need it (0027 adds 'expired', 0028 indexes it). Each migration still applies whole or not.
    const applied: string[] = [];
    for (;;) {
      if (through !== undefined && (applied.at(-1) === through || (await isApplied(migrator, through)))) break;
      const { error, results = [] } = await migrator.migrateUp();
      applied.push(...results.filter((r) => r.status === "Success").map((r) => r.migrationName));
      if (error) {
        const failed = results.find((r) => r.status === "Error")?.migrationName ?? "unknown";
        throw new Error(`migration ${failed} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
      }
      if (results.length === 0) break;
    }
    if (applied.length > 0) logger.info({ applied }, "migrations applied");
    return { applied };
  } finally {
    await lockClient.query("select pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]).catch(() => undefined);
    lockClient.release();
  }
}

/** Whether the named migration has been applied (a `through` target already reached). */
async function isApplied(migrator: Migrator, name: string): Promise<boolean> {
  const all = await migrator.getMigrations();
  if (!all.some((m) => m.name === name)) throw new Error(`no migration named ${name}`);
  return all.some((m) => m.name === name && m.executedAt !== undefined);
}
