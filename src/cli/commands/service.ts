import { Command, Option } from "commander";
import { openRuntime, taskTypeRegistry, waitForShutdownSignal } from "../../app.js";
import { startApiServer } from "../../api/server.js";
import { configEnvNames, loadConfig, type ConfigOverrides } from "../../config.js";
import { createLogger } from "../../logger.js";
import { migrate } from "../../store/migrate.js";
import type { CliIO } from "../io.js";
import { UsageError } from "../io.js";
import type { GlobalOptions } from "../program.js";

interface ServerFlags {
  host?: string;
  port?: string;
  dataDir?: string;
  apiToken?: string[];
  insecure?: boolean;
  enableShell?: boolean;
}

/** Parses a port flag strictly: a bad value is an error, never a silent default. */
function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) throw new UsageError(`--port: "${value}" is not a port number (0-65535)`);
  return port;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** Adds the flags shared by `server` and `up`. */
function addServerFlags(cmd: Command): Command {
  return cmd
    .option("--host <host>", `address to listen on (env ${configEnvNames.host}, default 127.0.0.1)`)
    .option("--port <port>", `port to listen on, 0 for any free port (env ${configEnvNames.port}, default 8080)`)
    .option("--data-dir <dir>", `embedded PostgreSQL data directory when DATABASE_URL is unset (env ${configEnvNames.dataDir}, default ./.task)`)
    .option("--api-token <token>", `accept this bearer token; repeatable (env ${configEnvNames.apiTokens}, comma-separated)`, collect)
    .option("--insecure", `allow a non-loopback --host without API tokens (env ${configEnvNames.allowInsecure})`)
    .option("--enable-shell", `allow shell tasks: remote code execution by design (env ${configEnvNames.enableShell})`);
}

function serverOverrides(flags: ServerFlags, globals: GlobalOptions): ConfigOverrides {
  return {
    host: flags.host,
    port: flags.port === undefined ? undefined : parsePort(flags.port),
    dataDir: flags.dataDir,
    apiTokens: flags.apiToken,
    allowInsecure: flags.insecure,
    enableShell: flags.enableShell,
    logLevel: globals.logLevel as ConfigOverrides["logLevel"],
  };
}

/** Runs the API (and, later, workers) until SIGINT/SIGTERM, then shuts everything down in order. */
async function runServer(io: CliIO, flags: ServerFlags, globals: GlobalOptions, announce: boolean): Promise<void> {
  const config = loadConfig(serverOverrides(flags, globals));
  const logger = createLogger(config.logLevel);
  const runtime = await openRuntime(config, logger, { allowEmbedded: true, migrate: true });
  let server;
  try {
    server = await startApiServer({ db: runtime.db.kysely, registry: taskTypeRegistry(config), config, logger });
  } catch (err) {
    await runtime.close();
    throw err;
  }
  if (announce) {
    io.stdout.write(`task service listening on ${server.url}\n`);
    io.stdout.write(`database: ${runtime.embedded ? `embedded PostgreSQL (data in ${runtime.embedded.dataDir})` : "DATABASE_URL"}\n`);
    if (runtime.embedded) {
      io.stdout.write(`attach more workers with: DATABASE_URL='${runtime.databaseUrl}' task-cli serve -n 10\n`);
    }
    io.stdout.write(`try: task-cli --address ${server.url} task create hello --type noop\n`);
  }
  await waitForShutdownSignal(logger);
  await server.close();
  await runtime.close();
  logger.info("stopped");
}

/** Registers `server`, `up` and `migrate`. */
export function registerServiceCommands(program: Command, io: CliIO): void {
  addServerFlags(
    program
      .command("server")
      .description("Run the API server (Connect, gRPC and gRPC-Web on one port). Uses DATABASE_URL, or an embedded PostgreSQL when it is unset.")
      .addHelpText("after", "\nEnvironment: DATABASE_URL, TASK_HOST, TASK_PORT, TASK_DATA_DIR, TASK_API_TOKENS, TASK_ALLOW_INSECURE, TASK_ENABLE_SHELL, LOG_LEVEL."),
  ).action(async (flags: ServerFlags, cmd: Command) => runServer(io, flags, cmd.optsWithGlobals<GlobalOptions>(), false));

  addServerFlags(
    program
      .command("up")
      .description("Run everything on this machine: an embedded PostgreSQL (unless DATABASE_URL is set) and the API server. Prints the address and the database URL.")
      .addHelpText("after", "\nEnvironment: DATABASE_URL, TASK_HOST, TASK_PORT, TASK_DATA_DIR, TASK_API_TOKENS, TASK_ALLOW_INSECURE, TASK_ENABLE_SHELL, LOG_LEVEL."),
  ).action(async (flags: ServerFlags, cmd: Command) => runServer(io, flags, cmd.optsWithGlobals<GlobalOptions>(), true));

  program
    .command("migrate")
    .description("Apply database migrations (graphile-worker's and the service's) and exit. Uses DATABASE_URL, or the embedded database under --data-dir.")
    .addOption(new Option("--data-dir <dir>", "embedded PostgreSQL data directory when DATABASE_URL is unset").env("TASK_DATA_DIR"))
    .action(async (flags: { dataDir?: string }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const config = loadConfig({ dataDir: flags.dataDir, logLevel: globals.logLevel as ConfigOverrides["logLevel"] });
      const logger = createLogger(config.logLevel);
      const runtime = await openRuntime(config, logger, { allowEmbedded: true, migrate: false });
      try {
        const { applied } = await migrate(runtime.db, logger);
        io.stdout.write(applied.length > 0 ? `applied: ${applied.join(", ")}\n` : "database is up to date\n");
      } finally {
        await runtime.close();
      }
    });
}
