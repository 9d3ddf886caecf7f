import os from "node:os";
import { startAgent as startRuntime, type Agent } from "../agent/agent.js";
import { loadConfig, type LOG_LEVELS } from "../config.js";
import { createLogger, type Logger } from "../logger.js";
import { builtinPlugins } from "../plugins/builtin.js";
import { PluginRegistry } from "../plugins/registry.js";
import type { Plugin } from "../plugins/types.js";
import type { TaskPlugin } from "./plugin.js";
import type { BuiltinTypeName } from "./worker.js";

export type { Agent } from "../agent/agent.js";

/** What startAgent takes. */
export interface StartAgentOptions {
  /** The task service's API address, e.g. https://tasks.example.com; or several replicas', comma-separated, tried in turn on reconnection. */
  server: string;
  /** An agent token (`task-cli agent token create`); leave out for a server without tokens. */
  token?: string;
  /** The task types this agent runs. Two with one name are refused. */
  plugins: TaskPlugin<any>[];
  /** The agent's name as `task-cli workers` shows it (default: the host name). */
  name?: string;
  /** Tasks run at once (default 10). */
  slots?: number;
  /** The queues to serve (default: the token's, or `default`). */
  queues?: string[];
  /** Its labels, e.g. `{ region: "eu" }`: it runs tasks whose labels are all among them, and tasks without labels (default: its token's labels). */
  labels?: Record<string, string>;
  /** Run built-in types too: true for all, or a list (shell still needs `enableShell`). Their settings (SMTP, run_query targets) come from this process's environment. */
  builtins?: boolean | BuiltinTypeName[];
  enableShell?: boolean;
  /** HTTP/2 (h2c on http://) instead of HTTP/1.1. */
  http2?: boolean;
  /** The CA to trust for an https:// server: a PEM file's path or its text (default: Node's trust store). */
  ca?: string | Buffer;
  /** Where outcomes wait until the server accepts them, kept across restarts (default: the OS temp dir's task-agent/NAME). */
  spoolDir?: string;
  logger?: Logger;
  logLevel?: (typeof LOG_LEVELS)[number];
}

/**
 * Starts a remote agent running `plugins` (issue 26): it needs no database, only the server's
 * address and an agent token; it registers, receives tasks over a stream, runs them here and
 * reports their output and outcomes. It installs no signal handlers: call stop() on SIGTERM.
 */
export function startAgent(options: StartAgentOptions): Agent {
  if (!options || typeof options.server !== "string" || options.server === "") throw new TypeError("startAgent: server is required");
  const plugins = options.plugins ?? [];
  if (!Array.isArray(plugins) || plugins.length === 0) throw new TypeError("startAgent: plugins must list at least one plugin (see definePlugin)");
  const config = loadConfig({ ...(options.enableShell === undefined ? {} : { enableShell: options.enableShell }), ...(options.logLevel ? { logLevel: options.logLevel } : {}) });
  const logger = options.logger ?? createLogger(config.logLevel);
  const wanted = options.builtins ?? false;
  const builtins = wanted === false ? undefined : builtinPlugins(config, logger);
  const chosen = builtins?.registry.list().filter((p) => wanted === true || (Array.isArray(wanted) && wanted.includes(p.name as BuiltinTypeName))) ?? [];
  const registry = new PluginRegistry<Plugin>([...chosen, ...(plugins as Plugin[])]);
  const agent = startRuntime({
    server: options.server,
    token: options.token,
    name: options.name ?? (os.hostname().toLowerCase().replace(/[^a-z0-9_.-]/g, "-").replace(/^[^a-z0-9]+/, "") || "agent"),
    registry,
    slots: options.slots ?? 10,
    queues: options.queues,
    labels: options.labels,
    http2: options.http2,
    ca: options.ca,
    spoolDir: options.spoolDir ?? config.agentSpoolDir,
    version: config.version,
    logger,
  });
  return {
    get agentId() {
      return agent.agentId;
    },
    inFlight: () => agent.inFlight(),
    async stop() {
      await agent.stop();
      await builtins?.close();
    },
  };
}
