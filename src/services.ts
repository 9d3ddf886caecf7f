import { openRuntime, type Runtime } from "./app.js";
import type { ApiServer } from "./api/server.js";
import type { Config } from "./config.js";
import type { Logger } from "./logger.js";
import { Metrics, startMetricsServer } from "./metrics.js";
import type { BuiltinPlugins } from "./plugins/builtin.js";
import { TaskTypeCatalog } from "./plugins/catalog.js";
import type { PluginRegistry } from "./plugins/registry.js";
import type { Plugin } from "./plugins/types.js";
import { ABANDON_AFTER_ABORT_MS } from "./queue/execute-task.js";
import { startWorkers, type Workers } from "./queue/runner.js";
import { Scheduler } from "./schedules/scheduler.js";
import { openListener } from "./store/listen.js";

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
  const runtime = await openRuntime(config, logger, { allowEmbedded: set.allowEmbedded, migrate: true });
  const metrics = new Metrics();
  // The process's one LISTEN connection: the API's watchers, the workers and the scheduler share it.
  const listener = openListener(runtime.databaseUrl, logger);
  let server: ApiServer | undefined;
  let metricsServer: { close(): Promise<void> } | undefined;
  let workers: Workers | undefined;
  let registry: PluginRegistry<Plugin>;
  let catalog: TaskTypeCatalog;
  try {
    registry = set.registry ? set.registry(runtime.plugins) : runtime.plugins.registry;
    catalog = new TaskTypeCatalog({ db: runtime.db.kysely, local: registry, liveMs: runtime.config.leaseMs });
    if (set.api) {
      // Imported here: a worker-only process (`serve`, startWorker) never loads the API server's code.
      const { startApiServer } = await import("./api/server.js");
      server = await startApiServer({ db: runtime.db, listener, registry, catalog, config: runtime.config, logger, metrics });
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
    await server?.close();
    await metricsServer?.close();
    await listener.close();
    await runtime.close();
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
        await Promise.all([server?.close(), metricsServer?.close(), workers?.stop(), scheduler.stop()]);
        await listener.close();
        await runtime.close();
        logger.info("stopped");
      })()),
  };
}
