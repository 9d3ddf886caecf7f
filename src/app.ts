import type { Config } from "./config.js";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "./embedded-postgres.js";
import type { Logger } from "./logger.js";
import { PluginRegistry } from "./plugins/registry.js";
import { builtinTaskTypes } from "./plugins/task-types.js";
import { openDb, type Db } from "./store/db.js";
import { migrate } from "./store/migrate.js";

/** A database to work against: the configured one, or an embedded cluster this process started. */
export interface Runtime {
  config: Config;
  logger: Logger;
  db: Db;
  /** Connection URL of the service database (the embedded one's when no DATABASE_URL is set). */
  databaseUrl: string;
  /** Set when this process started an embedded PostgreSQL. */
  embedded?: EmbeddedDatabase;
  /** Closes the pool, then stops the embedded PostgreSQL if any. */
  close(): Promise<void>;
}

/** Options for openRuntime. */
export interface RuntimeOptions {
  /** Start an embedded PostgreSQL when DATABASE_URL is unset (server, up); otherwise it is required. */
  allowEmbedded: boolean;
  /** Bring the schema up to date before returning. */
  migrate: boolean;
}

/** Connects to (or starts) PostgreSQL and optionally migrates it. */
export async function openRuntime(config: Config, logger: Logger, options: RuntimeOptions): Promise<Runtime> {
  let embedded: EmbeddedDatabase | undefined;
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    if (!options.allowEmbedded) throw new Error("DATABASE_URL is not set (use `task-cli up` for an embedded database)");
    embedded = await startEmbeddedPostgres(config.dataDir, logger);
    databaseUrl = embedded.url;
  }
  const db = openDb({ connectionString: databaseUrl, max: config.dbPoolSize }, logger);
  const close = async () => {
    await db.close();
    await embedded?.stop();
  };
  try {
    if (options.migrate) await migrate(db, logger);
  } catch (err) {
    await close();
    throw err;
  }
  return { config, logger, db, databaseUrl, embedded, close };
}

/** The task types this deployment accepts. */
export function taskTypeRegistry(config: Config): PluginRegistry {
  return new PluginRegistry(builtinTaskTypes(config));
}

/** Resolves on the first SIGINT or SIGTERM; a second one exits at once. */
export function waitForShutdownSignal(logger: Logger): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      logger.info({ signal }, "shutting down (send again to force)");
      process.removeListener("SIGINT", onSignal);
      process.removeListener("SIGTERM", onSignal);
      process.once("SIGINT", () => process.exit(130));
      process.once("SIGTERM", () => process.exit(143));
      resolve(signal);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
}
