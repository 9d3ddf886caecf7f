/**
 * How a process starts: the database (the configured one, or an embedded cluster it starts), the
 * schema, the plugins, then the API and/or workers and the scheduler, as `task-cli server`, `serve`
 * and `up` run them and as the SDK's startWorker does; and the graceful stop. The one start-up
 * module: the CLI's service commands (cli/commands/service.ts) and the SDK call it.
 */
import type { ApiServer } from "./api/server.js";
import type { Config } from "./config.js";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "./embedded-postgres.js";
import type { Logger } from "./logger.js";
import { Metrics, startMetricsServer } from "./metrics.js";
import { builtinPlugins, type BuiltinPlugins } from "./plugins/builtin.js";
import { TaskTypeCatalog } from "./plugins/catalog.js";
import type { PluginRegistry } from "./plugins/registry.js";
import type { Plugin } from "./plugins/types.js";
import { ABANDON_AFTER_ABORT_MS } from "./worker/execute-task.js";
import { startWorkers, type Workers } from "./worker/runner.js";
import type { Upkeep } from "./api/upkeep.js";
import { Scheduler } from "./schedules/scheduler.js";
import { startTracing } from "./tracing.js";
import { openDb, retryWhileUnavailable, type Db } from "./store/db.js";
import { openListener } from "./store/listen.js";
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

/** What startServices starts. */
export interface ServiceSet {
  /** Serve the API (Connect, gRPC, gRPC-Web, health, metrics, dashboard). */
  api: boolean;
  /** Worker concurrency; 0 runs no workers. */
  workers: number;
  /** Start an embedded PostgreSQL when no DATABASE_URL is configured. */
  allowEmbedded: boolean;
  /**
   * The plugins this process runs and validates with, given the built-ins as configured. Default:
   * the built-ins alone (`task-cli serve`); the SDK's startWorker passes the user's plugins.
   */
  registry?: (builtins: BuiltinPlugins) => PluginRegistry<Plugin>;
  /** See ExecuteDeps.abandonAfterAbortMs; default: longer than the shell plugin's kill grace. */
  abandonAfterAbortMs?: number;
}

/** The running parts of a server or worker process. */
export interface Services {
  runtime: Runtime;
  server?: ApiServer;
  workers?: Workers;
  /**
   * Graceful stop, in order: stop accepting requests and jobs, let running attempts finish (or
   * abort and release them after the grace period), close the pool, stop the embedded PostgreSQL.
   */
  stop(): Promise<void>;
}

/**
 * Starts the API and/or workers and the scheduler, as `task-cli server`, `serve` and `up` run them
 * and as the SDK's startWorker does: one code path for all of them (migrations, heartbeats,
 * liveness, reconciliation, metrics, the type registry, graceful shutdown).
 */
export async function startServices(config: Config, logger: Logger, set: ServiceSet): Promise<Services> {
  // Before anything that makes spans; loads no SDK unless OTEL_* settings turn tracing on.
  const tracing = await startTracing(config, logger);
  let runtime: Runtime;
  try {
    runtime = await openRuntime(config, logger, { allowEmbedded: set.allowEmbedded, migrate: true });
  } catch (err) {
    await tracing.stop();
    throw err;
  }
  const metrics = new Metrics();
  // The process's one LISTEN connection: the API's watchers, the workers and the scheduler share it.
  const listener = openListener(runtime.databaseUrl, logger);
  let server: ApiServer | undefined;
  let metricsServer: { close(): Promise<void> } | undefined;
  let workers: Workers | undefined;
  let upkeep: Upkeep | undefined;
  let registry: PluginRegistry<Plugin>;
  let catalog: TaskTypeCatalog;
  try {
    registry = set.registry ? set.registry(runtime.plugins) : runtime.plugins.registry;
    catalog = new TaskTypeCatalog({ db: runtime.db.kysely, local: registry, liveMs: runtime.config.leaseMs });
    if (set.api) {
      // Imported here: a worker-only process (`serve`, startWorker) never loads the API server's code.
      const { startApiServer } = await import("./api/server.js");
      server = await startApiServer({ db: runtime.db, listener, registry, catalog, config: runtime.config, logger, metrics });
      // A server without workers in its process rescues, expires and runs the cron jobs itself, so
      // servers and remote agents alone (no `serve`) are a whole deployment (api/upkeep.ts).
      if (set.workers === 0) {
        const { startUpkeep } = await import("./api/upkeep.js");
        upkeep = await startUpkeep({ db: runtime.db, config: runtime.config, logger, metrics });
      }
    } else if (config.metricsPort > 0) {
      const started = await startMetricsServer(metrics, config.host, config.metricsPort);
      logger.info({ url: started.url }, "metrics listening");
      metricsServer = started;
    }
    if (set.workers > 0) {
      workers = await startWorkers({
        databaseUrl: runtime.databaseUrl,
        listener,
        registry,
        config: runtime.config,
        logger,
        metrics,
        // Longer than the shell plugin's kill grace, so a shell attempt is never abandoned while it is still being killed.
        abandonAfterAbortMs: set.abandonAfterAbortMs ?? Math.max(ABANDON_AFTER_ABORT_MS, runtime.config.shellKillGraceMs + 5_000),
      });
    }
  } catch (err) {
    await upkeep?.stop();
    await server?.close();
    await metricsServer?.close();
    await listener.close();
    await runtime.close();
    await tracing.stop();
    throw err;
  }
  // Every server and worker process runs the scheduler; the database makes each tick happen once.
  const scheduler = new Scheduler({ db: runtime.db, registry, catalog, logger, listener });
  scheduler.start();
  let stopping: Promise<void> | undefined;
  return {
    runtime,
    server,
    workers,
    stop: () =>
      (stopping ??= (async () => {
        await Promise.all([server?.close(), metricsServer?.close(), workers?.stop(), scheduler.stop(), upkeep?.stop()]);
        await listener.close();
        await runtime.close();
        // Last: the spans of the attempts that ended during the stop are exported too.
        await tracing.stop();
        logger.info("stopped");
      })()),
  };
}
