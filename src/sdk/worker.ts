import { formatLabels } from "../labels.js";
import { envSetting, loadConfig, type ConfigOverrides, type LOG_LEVELS } from "../config.js";
import { createLogger, type Logger } from "../logger.js";
import { PluginRegistry } from "../plugins/registry.js";
import type { Plugin } from "../plugins/types.js";
import { startServices } from "../services.js";
import { DEFAULT_QUEUE } from "../store/queues.js";
import type { TaskPlugin } from "./plugin.js";

/** The built-in task types a worker may also serve. */
export type BuiltinTypeName = "noop" | "run_query" | "send_email" | "shell";

/** What startWorker takes. Anything left out comes from the environment, as for `task-cli serve` (README, Configuration). */
export interface StartWorkerOptions {
  /** PostgreSQL of the task service (what `task-cli up` prints as "database URL"). */
  databaseUrl: string;
  /** The task types this worker runs. Two with one name are refused. */
  plugins: TaskPlugin<any>[];
  /** Tasks run at once (default 10, or TASK_WORKERS). */
  concurrency?: number;
  /**
   * Serve built-in types too: true for all of them, or a list (default none). shell still needs
   * `enableShell`.
   */
  builtins?: boolean | BuiltinTypeName[];
  /**
   * The queues to serve (default: TASK_QUEUES if set, else `default` and the default queues of
   * `plugins`, so a plugin's tasks, which go to its default queue, are fetched by its own worker).
   */
  queues?: string[];
  /**
   * The worker's labels, e.g. `{ region: "eu" }`: it runs tasks whose labels are all among them,
   * and tasks without labels (default: TASK_WORKER_LABELS, else none).
   */
  labels?: Record<string, string>;
  /** Run shell tasks (with builtins including shell). */
  enableShell?: boolean;
  /** Serve Prometheus metrics on this port (default none, or TASK_METRICS_PORT). */
  metricsPort?: number;
  /** How long stop() lets running attempts finish before aborting them (default 30 000 ms). */
  shutdownGraceMs?: number;
  /**
   * How long a plugin may take to stop after its signal fired (timeout, cancel, shutdown) before the
   * attempt is ended without it and its slot freed (default 10 000 ms, or the shell kill grace + 5 s).
   */
  abortGraceMs?: number;
  /** Where outcomes wait while PostgreSQL is unreachable (default ./.task/spool). */
  spoolDir?: string;
  /** A pino logger (default: one at `logLevel` writing to stderr). */
  logger?: Logger;
  logLevel?: (typeof LOG_LEVELS)[number];
  /** Advanced settings, named as in the configuration schema (e.g. heartbeatIntervalMs, leaseMs, pollIntervalMs). */
  config?: ConfigOverrides;
  /** Where unset settings are read from (default: this process's environment). */
  env?: NodeJS.ProcessEnv;
}

/** A running worker. */
export interface Worker {
  /** This process's id in the workers table and in ListTaskTypes' "served by". */
  readonly workerId: string;
  /** Attempts running right now. */
  inFlight(): number;
  /**
   * Graceful stop: takes no new tasks, lets running attempts finish within the grace period, then
   * aborts the rest (they are retried elsewhere), unregisters and closes its connections.
   */
  stop(): Promise<void>;
}

/**
 * Starts a worker process's pool running `plugins`, exactly as `task-cli serve` runs the built-ins:
 * migrations, the type registry (its types appear in ListTaskTypes, served by this worker), heartbeats
 * and the liveness lock, the reconciler, the scheduler, metrics and graceful shutdown. It installs
 * no signal handlers: call stop() on SIGTERM.
 */
export async function startWorker(options: StartWorkerOptions): Promise<Worker> {
  if (!options || typeof options.databaseUrl !== "string" || options.databaseUrl === "") {
    throw new TypeError("startWorker: databaseUrl is required");
  }
  const plugins = options.plugins ?? [];
  if (!Array.isArray(plugins) || plugins.length === 0) throw new TypeError("startWorker: plugins must list at least one plugin (see definePlugin)");
  // Refused before anything connects: a duplicate name is a programming error.
  new PluginRegistry(plugins as Plugin[]);
  const env = options.env;
  const queues = options.queues ?? (envSetting("workerQueues", env) !== undefined || options.config?.workerQueues ? undefined : servedQueues(plugins));
  const overrides: ConfigOverrides = {
    ...(queues === undefined ? {} : { workerQueues: queues }),
    ...options.config,
    databaseUrl: options.databaseUrl,
    ...(options.concurrency === undefined ? {} : { workerConcurrency: options.concurrency }),
    ...(options.labels === undefined ? {} : { workerLabels: formatLabels(options.labels) }),
    ...(options.enableShell === undefined ? {} : { enableShell: options.enableShell }),
    ...(options.metricsPort === undefined ? {} : { metricsPort: options.metricsPort }),
    ...(options.shutdownGraceMs === undefined ? {} : { shutdownGraceMs: options.shutdownGraceMs }),
    ...(options.spoolDir === undefined ? {} : { spoolDir: options.spoolDir }),
    ...(options.logLevel === undefined ? {} : { logLevel: options.logLevel }),
  };
  const config = loadConfig(overrides, env);
  if (config.workerConcurrency < 1) throw new RangeError("startWorker: concurrency must be at least 1");
  const logger = options.logger ?? createLogger(config.logLevel);
  const wanted = options.builtins ?? false;
  const services = await startServices(config, logger, {
    api: false,
    workers: config.workerConcurrency,
    allowEmbedded: false,
    abandonAfterAbortMs: options.abortGraceMs,
    registry: (builtins) => {
      const chosen = builtins.registry.list().filter((p) => wanted === true || (Array.isArray(wanted) && wanted.includes(p.name as BuiltinTypeName)));
      if (Array.isArray(wanted)) {
        const unknown = wanted.filter((n) => !chosen.some((p) => p.name === n));
        if (unknown.length > 0) throw new TypeError(`startWorker: unknown built-in type(s) ${unknown.join(", ")}`);
      }
      return new PluginRegistry<Plugin>([...chosen, ...(plugins as Plugin[])]);
    },
  });
  const workers = services.workers!;
  return { workerId: workers.workerId, inFlight: () => workers.inFlight(), stop: () => services.stop() };
}

/** `default` and the plugins' default queues. */
function servedQueues(plugins: readonly { defaults: { queue?: string } }[]): string[] {
  return [...new Set([DEFAULT_QUEUE, ...plugins.flatMap((p) => (p.defaults.queue ? [p.defaults.queue] : []))])];
}
