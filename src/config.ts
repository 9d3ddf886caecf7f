import { z } from "zod";

/** How a boolean environment variable is spelled: 1/true/yes/on or 0/false/no/off. */
const envBoolean = z
  .union([z.boolean(), z.enum(["1", "true", "yes", "on", "0", "false", "no", "off", ""])])
  .transform((v) => v === true || v === "1" || v === "true" || v === "yes" || v === "on");

const commaList = z
  .union([z.array(z.string()), z.string()])
  .transform((v) => (Array.isArray(v) ? v : v.split(",")).map((s) => s.trim()).filter((s) => s.length > 0));

/**
 * Every setting of the service, with its default and the environment variable it is read from.
 * This module is the only reader of process.env; everything else receives a Config.
 */
export const configSchema = z.object({
  /** DATABASE_URL: PostgreSQL to use. Unset: `server`/`up` start an embedded PostgreSQL under dataDir. */
  databaseUrl: z.string().url().optional(),
  /** TASK_DATA_DIR: where the embedded PostgreSQL keeps its data (and the email outbox). */
  dataDir: z.string().min(1).default("./.task"),
  /** TASK_HOST: address the API listens on. Loopback by default; anything else needs tokens or allowInsecure. */
  host: z.string().min(1).default("127.0.0.1"),
  /** TASK_PORT: port the API listens on (0 picks a free one). */
  port: z.coerce.number().int().min(0).max(65535).default(8080),
  /** TASK_API_TOKENS: comma-separated bearer tokens; when set, every RPC must present one. */
  apiTokens: commaList.default([]),
  /** TASK_ALLOW_INSECURE: allow a non-loopback listen address without API tokens. */
  allowInsecure: envBoolean.default(false),
  /** TASK_ENABLE_SHELL: allow the shell task type (remote code execution by design). */
  enableShell: envBoolean.default(false),
  /** TASK_MAX_REQUEST_BYTES: largest request body the API reads. */
  maxRequestBytes: z.coerce.number().int().min(1024).default(4 * 1024 * 1024),
  /** TASK_MAX_BATCH_SIZE: most tasks one CreateTasks call may carry. */
  maxBatchSize: z.coerce.number().int().min(1).default(5000),
  /** TASK_DB_POOL_SIZE: PostgreSQL connections per process for the API and store. */
  dbPoolSize: z.coerce.number().int().min(1).default(10),
  /** LOG_LEVEL: trace, debug, info, warn, error, fatal or silent. */
  logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
});

/** The resolved configuration. */
export type Config = z.infer<typeof configSchema>;
/** Settings given explicitly (CLI flags, tests); they win over the environment. */
export type ConfigOverrides = Partial<z.input<typeof configSchema>>;

const envNames: Record<keyof Config, string> = {
  databaseUrl: "DATABASE_URL",
  dataDir: "TASK_DATA_DIR",
  host: "TASK_HOST",
  port: "TASK_PORT",
  apiTokens: "TASK_API_TOKENS",
  allowInsecure: "TASK_ALLOW_INSECURE",
  enableShell: "TASK_ENABLE_SHELL",
  maxRequestBytes: "TASK_MAX_REQUEST_BYTES",
  maxBatchSize: "TASK_MAX_BATCH_SIZE",
  dbPoolSize: "TASK_DB_POOL_SIZE",
  logLevel: "LOG_LEVEL",
};

/** Raised when a setting is invalid; the message names the variable and the problem. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Reads the configuration from the environment, with explicit overrides on top. */
export function loadConfig(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): Config {
  const raw: Record<string, unknown> = {};
  for (const [key, name] of Object.entries(envNames)) {
    const value = env[name];
    if (value !== undefined && value !== "") raw[key] = value;
  }
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) raw[key] = value;
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? "");
      const name = envNames[key as keyof Config] ?? key;
      return `${name}: ${issue.message}`;
    });
    throw new ConfigError(`invalid configuration: ${problems.join("; ")}`);
  }
  return parsed.data;
}

/** Environment variable names, for help texts. */
export const configEnvNames = envNames;

/** Whether the host is a loopback address, which is safe to serve without tokens. */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
