/**
 * What `server`, `up` and `serve` run: the API and/or workers until a shutdown signal. Kept apart
 * from the command definitions (service.ts) and imported only when one of those commands runs, so
 * the client commands (`task get`, ...) do not load the server, the workers and the database
 * drivers at start-up.
 */
import net from "node:net";
import { openRuntime, waitForShutdownSignal, type Runtime } from "../../app.js";
import { startServices } from "../../services.js";
import type { ApiServer } from "../../api/server.js";
import type { Workers } from "../../queue/runner.js";
import { loadConfig, type ConfigOverrides } from "../../config.js";
import { createLogger } from "../../logger.js";
import { migrate } from "../../store/migrate.js";
import { attachCommand } from "../attach-line.js";
import type { CliIO } from "../io.js";

/**
 * Fails at once when the API port is taken, before starting PostgreSQL and migrating (which take
 * seconds and would end in EADDRINUSE anyway). Another process can still take the port in between;
 * then the listen error is reported as usual.
 */
async function ensurePortFree(host: string, port: number): Promise<void> {
  if (port === 0) return;
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EADDRINUSE") {
        reject(new Error(`port ${port} on ${host} is already in use (another \`task-cli up\` or server?): stop it, or pick another port with --port N (TASK_PORT), or --port 0 for any free one`));
      } else if (err.code === "EACCES") {
        reject(new Error(`not allowed to listen on port ${port} on ${host}: ports below 1024 need privileges; pick another with --port N`));
      } else reject(err);
    });
    probe.listen(port, host, () => probe.close(() => resolve()));
  });
}

/** What runServices starts. */
export interface ServiceSet {
  api: boolean;
  workers: number;
  announce: boolean;
  allowEmbedded: boolean;
}

/**
 * Runs the API and/or workers until SIGINT/SIGTERM, then shuts down in order: stop accepting
 * requests and jobs, let running attempts finish (or abort and release them after the grace
 * period), close the pool, stop the embedded PostgreSQL last.
 */
export async function runServices(io: CliIO, overrides: ConfigOverrides, set: ServiceSet): Promise<void> {
  const config = loadConfig({ ...overrides, workerConcurrency: set.workers });
  const logger = createLogger(config.logLevel);
  if (set.api) await ensurePortFree(config.host, config.port);
  // The one start path for server, serve, up and the SDK's startWorker (src/services.ts).
  const services = await startServices(config, logger, set);
  if (set.announce) announce(io, services.runtime, services.server, set.workers, services.workers);
  await waitForShutdownSignal(logger);
  await services.stop();
}

function announce(io: CliIO, runtime: Runtime, server: ApiServer | undefined, workers: number, pool: Workers | undefined): void {
  const lines: string[] = [];
  if (server) lines.push(`task service listening on ${server.url}`);
  lines.push(`workers: ${workers === 0 ? "none (--workers 0)" : `${workers}, serving queues ${pool?.queues.join(",")}, types ${pool?.types.join(",")}`}`);
  if (runtime.embedded) {
    lines.push(`database: embedded PostgreSQL, data in ${runtime.embedded.dataDir}`);
    lines.push(`database URL: ${runtime.databaseUrl}`);
  } else {
    lines.push("database: DATABASE_URL");
  }
  // runtime.config has the embedded playground among its query targets; the line reproduces this
  // process's worker settings, so an attached worker runs what the built-in ones run.
  lines.push(`attach more workers: ${attachCommand(runtime.config, runtime.databaseUrl, workers || 10)}`);
  if (server) lines.push(`try: task-cli --address ${server.url} task create hello --type noop`);
  io.stdout.write(`${lines.join("\n")}\n`);
}

/** `task-cli migrate`: applies the migrations and says what it applied. */
export async function runMigrate(io: CliIO, overrides: ConfigOverrides): Promise<void> {
  const config = loadConfig(overrides);
  const logger = createLogger(config.logLevel);
  const runtime = await openRuntime(config, logger, { allowEmbedded: true, migrate: false });
  try {
    const { applied } = await migrate(runtime.db, logger);
    io.stdout.write(applied.length > 0 ? `applied: ${applied.join(", ")}\n` : "database is up to date\n");
  } finally {
    await runtime.close();
  }
}
