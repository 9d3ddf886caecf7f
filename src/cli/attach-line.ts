import path from "node:path";
import { configEnvNames as names, type Config } from "../config.js";

/** Quotes a value for a POSIX shell (single quotes; an embedded ' becomes '\''). */
export function shellQuote(value: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * The command that starts a worker process behaving like `up`'s built-in workers: the same
 * database, run_query targets, email delivery (SMTP or the same outbox directory), shell setting
 * and queues. Settings left at their defaults are left out, so the line stays short.
 */
export function attachCommand(config: Config, databaseUrl: string, concurrency: number): string {
  const env: [string, string][] = [[names.databaseUrl, databaseUrl]];
  const targets = Object.entries(config.queryTargets).map(([name, url]) => `${name}=${url}`);
  if (targets.length > 0) env.push([names.queryTargets, targets.join(",")]);
  if (config.queryWritableTargets.length > 0) env.push([names.queryWritableTargets, config.queryWritableTargets.join(",")]);
  if (config.smtpUrl) env.push([names.smtpUrl, config.smtpUrl]);
  // Without SMTP, send_email writes to an outbox directory: the attached worker must use the same one.
  else env.push([names.outboxDir, path.resolve(config.outboxDir ?? path.join(config.dataDir, "outbox"))]);
  if (config.smtpFrom !== "task-service@localhost") env.push([names.smtpFrom, config.smtpFrom]);
  if (config.shellUser) env.push([names.shellUser, config.shellUser]);
  const args = ["task-cli", "serve", "-n", String(concurrency)];
  if (config.enableShell) args.push("--enable-shell");
  if (config.workerQueues.join(",") !== "default") args.push("--queues", config.workerQueues.join(","));
  return [...env.map(([k, v]) => `${k}=${shellQuote(v)}`), ...args.map(shellQuote)].join(" ");
}
