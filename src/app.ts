import type { Config } from "./config.js";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "./embedded-postgres.js";
import type { Logger } from "./logger.js";
import { builtinPlugins, type BuiltinPlugins } from "./plugins/builtin.js";
import { openDb, retryWhileUnavailable, type Db } from "./store/db.js";
import { migrate } from "./store/migrate.js";

/** A database to work against (the configured one, or an embedded cluster this process started) and the plugins. */
export interface Runtime {
  /** The configuration, with the embedded playground added to the run_query targets. */
  config: Config;
  logger: Logger;
  db: Db;
  /** Connection URL of the service database (the embedded one's when no DATABASE_URL is set). */
  databaseUrl: string;
  /** Set when this process started an embedded PostgreSQL. */
  embedded?: EmbeddedDatabase;
  plugins: BuiltinPlugins;
  /** Closes plugins and the pool, then stops the embedded PostgreSQL if any. */
  close(): Promise<void>;
}

/** Options for openRuntime. */
export interface RuntimeOptions {
  /** Start an embedded PostgreSQL when DATABASE_URL is unset (server, up, migrate); otherwise it is required. */
  allowEmbedded: boolean;
  /** Bring the schema up to date before returning. */
  migrate: boolean;
}

/** Connects to (or starts) PostgreSQL, optionally migrates it, and builds the plugin registry. */
export async function openRuntime(baseConfig: Config, logger: Logger, options: RuntimeOptions): Promise<Runtime> {
  let embedded: EmbeddedDatabase | undefined;
  let databaseUrl = baseConfig.databaseUrl;
  let config = baseConfig;
  if (!databaseUrl) {
    if (!options.allowEmbedded) throw new Error("DATABASE_URL is not set (run `task-cli up`, which starts an embedded database, or set DATABASE_URL)");
    embedded = await startEmbeddedPostgres(config.dataDir, logger);
    databaseUrl = embedded.url;
    config = { ...config, queryTargets: { playground: embedded.playgroundUrl, ...config.queryTargets } };
  }
  const db = openDb({ connectionString: databaseUrl, max: config.dbPoolSize }, logger);
  const plugins = builtinPlugins(config, logger);
  const close = async () => {
    await plugins.close();
    await db.close();
    await embedded?.stop();
  };
  try {
    if (options.migrate) await retryWhileUnavailable(() => migrate(db, logger), "migrating at start-up", STARTUP_PATIENCE_MS, logger);
  } catch (err) {
    await close();
    throw err;
  }
  return { config, logger, db, databaseUrl, embedded, plugins, close };
}

/** A worker restarted during a database restart waits for it rather than crashing. */
const STARTUP_PATIENCE_MS = 60_000;

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
