import path from "node:path";
import type { Config } from "../config.js";
import type { Logger } from "../logger.js";
import { noopPlugin } from "./noop.js";
import { PluginRegistry } from "./registry.js";
import { runQueryPlugin } from "./run-query.js";
import { sendEmailPlugin } from "./send-email.js";
import { shellPlugin } from "./shell.js";
import type { Plugin } from "./types.js";

/** The built-in plugins in a registry, and how to release what they hold (database pools). */
export interface BuiltinPlugins {
  registry: PluginRegistry<Plugin>;
  close(): Promise<void>;
}

/**
 * Fills the registry with the built-in plugins as this deployment configures them. The control
 * plane uses it for names, schemas and defaults; workers also run the plugins.
 */
export function builtinPlugins(config: Config, logger: Logger): BuiltinPlugins {
  const runQuery = runQueryPlugin({
    targets: config.queryTargets,
    writableTargets: config.queryWritableTargets,
    statementTimeoutMs: config.queryStatementTimeoutMs,
    maxResultBytes: config.maxResultBytes,
    maxReadBytes: config.queryMaxReadBytes,
    poolSize: Math.max(1, Math.min(config.workerConcurrency, 50)),
    logger: logger.child({ plugin: "run_query" }),
  });
  const plugins: Plugin[] = [
    noopPlugin as Plugin,
    runQuery as Plugin,
    sendEmailPlugin({
      smtpUrl: config.smtpUrl,
      outboxDir: config.outboxDir ?? path.join(config.dataDir, "outbox"),
      defaultFrom: config.smtpFrom,
      allowedSenders: config.emailAllowedSenders,
    }) as Plugin,
    shellPlugin({ enabled: config.enableShell, killGraceMs: config.shellKillGraceMs, user: config.shellUser }) as Plugin,
  ];
  return { registry: new PluginRegistry(plugins), close: () => runQuery.close() };
}
