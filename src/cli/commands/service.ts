import net from "node:net";
import { Command, Option } from "commander";
import type { ApiServer } from "../../api/server.js";
import { configEnvNames, loadConfig, type ConfigOverrides } from "../../config.js";
import type { Workers } from "../../worker/runner.js";
import type { Runtime, ServiceSet } from "../../services.js";
import { attachCommand } from "../attach-line.js";
import type { CliIO } from "../io.js";
import { UsageError } from "../io.js";
import { collect, parseDurationFlag, parseInteger } from "../parse.js";
import type { GlobalOptions } from "../program.js";
import { loadServerTls } from "../../tls.js";

interface ServerFlags {
  host?: string;
  port?: string;
  dataDir?: string;
  apiToken?: string[];
  insecure?: boolean;
  corsOrigin?: string[];
  tlsCert?: string;
  tlsKey?: string;
  enableShell?: boolean;
  shellRole?: string;
  queues?: string;
  labels?: string;
  retainSucceeded?: string;
  retainFailed?: string;
  retainCancelled?: string;
  retainExpired?: string;
}

/** A retention flag: a duration, or 0 / "forever" to keep those tasks. */
function parseRetention(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (value === "0" || value === "forever") return 0;
  return Math.round(parseDurationFlag(value, flag));
}

/** Adds the retention flags shared by every command that runs workers. */
function addRetentionFlags(cmd: Command): Command {
  return cmd
    .option("--retain-succeeded <duration>", `delete SUCCEEDED tasks this long after they finished, e.g. 7d; 0 keeps them (env ${configEnvNames.retainSucceededMs} in ms, default 7d)`)
    .option("--retain-failed <duration>", `the same for FAILED tasks (env ${configEnvNames.retainFailedMs} in ms, default 30d)`)
    .option("--retain-cancelled <duration>", `the same for CANCELLED tasks (env ${configEnvNames.retainCancelledMs} in ms, default 30d)`)
    .option("--retain-expired <duration>", `the same for EXPIRED tasks (env ${configEnvNames.retainExpiredMs} in ms, default 30d)`);
}

/** Parses a port flag strictly: a bad value is an error, never a silent default. */
function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) throw new UsageError(`--port: "${value}" is not a port number (0-65535)`);
  return port;
}

/** Adds the flags shared by `server` and `up`. */
function addServerFlags(cmd: Command): Command {
  return addRetentionFlags(cmd)
    .option("--host <host>", `address to listen on (env ${configEnvNames.host}, default 127.0.0.1)`)
    .option("--port <port>", `port to listen on, 0 for any free port (env ${configEnvNames.port}, default 8080)`)
    .option("--data-dir <dir>", `embedded PostgreSQL data directory when DATABASE_URL is unset (env ${configEnvNames.dataDir}, default ./.task)`)
    .option("--api-token <token>", `accept this bearer token; repeatable (env ${configEnvNames.apiTokens}, comma-separated)`, collect)
    .option("--insecure", `allow a non-loopback --host without API tokens (env ${configEnvNames.allowInsecure})`)
    .option("--tls-cert <file>", `serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain; needs --tls-key (env ${configEnvNames.tlsCert})`)
    .option("--tls-key <file>", `the PEM private key of --tls-cert (env ${configEnvNames.tlsKey})`)
    .option("--cors-origin <origin>", `let browser pages on this origin call the API; repeatable, * for any (env ${configEnvNames.corsOrigins}, comma-separated)`, collect)
    .option("--enable-shell", `allow shell tasks: remote code execution by design (env ${configEnvNames.enableShell})`)
    .option("--shell-role <role>", `the least role that may create shell tasks: operator or admin (env ${configEnvNames.shellRole}, default admin)`);
}

function serverOverrides(flags: ServerFlags, globals: GlobalOptions): ConfigOverrides {
  return { ...workerOverrides(flags, globals), host: flags.host, port: flags.port === undefined ? undefined : parsePort(flags.port), apiTokens: flags.apiToken, allowInsecure: flags.insecure, tlsCert: flags.tlsCert, tlsKey: flags.tlsKey, corsOrigins: flags.corsOrigin, shellRole: parseShellRole(flags.shellRole) };
}

/** --shell-role: operator or admin; anything else is a usage error. */
function parseShellRole(value: string | undefined): ConfigOverrides["shellRole"] {
  if (value === undefined) return undefined;
  if (value !== "operator" && value !== "admin") throw new UsageError(`--shell-role: "${value}" must be operator or admin`);
  return value;
}

function workerOverrides(flags: ServerFlags, globals: GlobalOptions): ConfigOverrides {
  return {
    dataDir: flags.dataDir,
    enableShell: flags.enableShell,
    workerQueues: flags.queues,
    workerLabels: flags.labels,
    retainSucceededMs: parseRetention(flags.retainSucceeded, "--retain-succeeded"),
    retainFailedMs: parseRetention(flags.retainFailed, "--retain-failed"),
    retainCancelledMs: parseRetention(flags.retainCancelled, "--retain-cancelled"),
    retainExpiredMs: parseRetention(flags.retainExpired, "--retain-expired"),
    logLevel: globals.logLevel as ConfigOverrides["logLevel"],
  };
}

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

/**
 * Runs the API and/or workers until SIGINT/SIGTERM, then shuts down in order: stop accepting
 * requests and jobs, let running attempts finish (or abort and release them after the grace
 * period), close the pool, stop the embedded PostgreSQL last.
 */
async function runServices(io: CliIO, overrides: ConfigOverrides, set: ServiceSet & { announce: boolean }): Promise<void> {
  const config = loadConfig({ ...overrides, workerConcurrency: set.workers });
  if (set.api) {
    // A bad certificate or key fails here, before PostgreSQL starts (the server reads them again).
    loadServerTls(config.tlsCert, config.tlsKey);
    await ensurePortFree(config.host, config.port);
  }
  // Loaded only now: the client commands (`task get`, ...) do not load the server, the workers and
  // the database drivers at start-up.
  const [{ createLogger }, { startServices, waitForShutdownSignal }] = await Promise.all([import("../../logger.js"), import("../../services.js")]);
  const logger = createLogger(config.logLevel);
  // The one start path for server, serve, up and the SDK's startWorker.
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
  // Over TLS with a private CA, the client needs that CA too (its path is not known here).
  if (server) lines.push(`try: task-cli --address ${server.url}${server.url.startsWith("https:") ? " --ca CA.pem" : ""} task create hello --type noop`);
  io.stdout.write(`${lines.join("\n")}\n`);
}

/** Registers `server`, `up` and `migrate`. */
export function registerServiceCommands(program: Command, io: CliIO): void {
  const names = (keys: (keyof typeof configEnvNames)[]) => keys.map((k) => configEnvNames[k]).join(", ");
  const envHelp = `\nEnvironment: ${names(["databaseUrl", "host", "port", "dataDir", "apiTokens", "allowInsecure", "tlsCert", "tlsKey", "enableShell", "shellRole"])},\n${names([
    "workerConcurrency", "metricsPort", "backoffBaseMs", "backoffMaxMs", "shutdownGraceMs", "smtpUrl", "smtpFrom", "queryTargets", "logLevel",
  ])}\n(see the README's configuration table).`;

  addServerFlags(
    program
      .command("server")
      .description("Run the API server alone (Connect, gRPC and gRPC-Web on one port). Uses DATABASE_URL, or an embedded PostgreSQL when it is unset.")
      .addHelpText("after", envHelp),
  ).action(async (flags: ServerFlags, cmd: Command) =>
    runServices(io, serverOverrides(flags, cmd.optsWithGlobals<GlobalOptions>()), { api: true, workers: 0, announce: false, allowEmbedded: true }),
  );

  addServerFlags(
    program
      .command("up")
      .description("Run everything on this machine: an embedded PostgreSQL (unless DATABASE_URL is set), the API server and workers. Prints the address and the database URL.")
      .option("--workers <n>", `worker concurrency in this process; 0 runs the API alone (env ${configEnvNames.workerConcurrency}, default 10)`)
      .option("--queues <names>", `queues the built-in workers serve, comma-separated (env ${configEnvNames.workerQueues}, default: default)`)
      .option("--labels <k=v,...>", `the built-in workers' labels: they claim tasks whose labels (task create --on) are all among them (env ${configEnvNames.workerLabels}, default: none)`)
      .addHelpText("after", envHelp),
  ).action(async (flags: ServerFlags & { workers?: string }, cmd: Command) => {
    const overrides = serverOverrides(flags, cmd.optsWithGlobals<GlobalOptions>());
    const workers = flags.workers === undefined ? loadConfig(overrides).workerConcurrency : parseInteger(flags.workers, "--workers", 0, 1000);
    await runServices(io, overrides, { api: true, workers, announce: true, allowEmbedded: true });
  });

  const serve = program
    .command("serve")
    .description("Run workers that execute tasks (needs DATABASE_URL; `up` prints one). Any number of worker processes may share a database.")
    .option("-n, --concurrency <n>", `tasks run at once (env ${configEnvNames.workerConcurrency}, default 10)`)
    .option("--enable-shell", `run shell tasks (env ${configEnvNames.enableShell})`)
    .option("--queues <names>", `queues to serve, comma-separated; tasks of other queues are left to other workers (env ${configEnvNames.workerQueues}, default: default)`)
    .option("--labels <k=v,...>", `this worker's labels, e.g. region=eu,gpu=true: it claims tasks whose labels (task create --on) are all among them, and tasks without labels (env ${configEnvNames.workerLabels}, default: none)`);
  addRetentionFlags(serve)
    .addHelpText("after", envHelp)
    .action(async (flags: ServerFlags & { concurrency?: string }, cmd: Command) => {
      const overrides = workerOverrides(flags, cmd.optsWithGlobals<GlobalOptions>());
      const workers = flags.concurrency === undefined ? loadConfig(overrides).workerConcurrency : parseInteger(flags.concurrency, "--concurrency", 1, 1000);
      await runServices(io, overrides, { api: false, workers, announce: false, allowEmbedded: false });
    });

  program
    .command("migrate")
    .description("Apply database migrations (graphile-worker's and the service's) and exit. Uses DATABASE_URL, or the embedded database under --data-dir.")
    .addOption(new Option("--data-dir <dir>", "embedded PostgreSQL data directory when DATABASE_URL is unset").env(configEnvNames.dataDir))
    .action(async (flags: { dataDir?: string }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      await runMigrate(io, { dataDir: flags.dataDir, logLevel: globals.logLevel as ConfigOverrides["logLevel"] });
    });
}

/** `task-cli migrate`: applies the migrations and says what it applied. */
async function runMigrate(io: CliIO, overrides: ConfigOverrides): Promise<void> {
  const config = loadConfig(overrides);
  const [{ createLogger }, { openRuntime }, { migrate }] = await Promise.all([import("../../logger.js"), import("../../services.js"), import("../../store/migrate.js")]);
  const logger = createLogger(config.logLevel);
  const runtime = await openRuntime(config, logger, { allowEmbedded: true, migrate: false });
  try {
    const { applied } = await migrate(runtime.db, logger);
    io.stdout.write(applied.length > 0 ? `applied: ${applied.join(", ")}\n` : "database is up to date\n");
  } finally {
    await runtime.close();
  }
}
