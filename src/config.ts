import { z } from "zod";

/** How a boolean environment variable is spelled: 1/true/yes/on or 0/false/no/off. */
const envBoolean = z
  .union([z.boolean(), z.enum(["1", "true", "yes", "on", "0", "false", "no", "off", ""])])
  .transform((v) => v === true || v === "1" || v === "true" || v === "yes" || v === "on");

const commaList = z
  .union([z.array(z.string()), z.string()])
  .transform((v) => (Array.isArray(v) ? v : v.split(",")).map((s) => s.trim()).filter((s) => s.length > 0));

function parseTargets(text: string, ctx: z.RefinementCtx): Record<string, string> {
  const targets: Record<string, string> = {};
  for (const pair of text.split(/[\s,]+/).filter(Boolean)) {
    const eq = pair.indexOf("=");
    const name = pair.slice(0, eq);
    if (eq <= 0 || !/^[a-z][a-z0-9_]*$/.test(name)) {
      ctx.addIssue({ code: "custom", message: `"${pair}" is not name=postgres://... (names: lowercase letters, digits, _)` });
      continue;
    }
    targets[name] = pair.slice(eq + 1);
  }
  return targets;
}

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
  /**
   * TASK_CORS_ORIGINS: comma-separated browser origins (e.g. https://app.example.com, or *) that may call
   * the API from their pages (Connect, gRPC-Web). Empty: no CORS headers, browsers refuse cross-origin calls.
   */
  corsOrigins: commaList
    .pipe(z.array(z.string().regex(/^(\*|https?:\/\/[^/\s]+)$/, "each origin is * or scheme://host[:port], without a path")))
    .default([]),
  /** TASK_ENABLE_SHELL: allow the shell task type (remote code execution by design). */
  enableShell: envBoolean.default(false),
  /** TASK_MAX_REQUEST_BYTES: largest request body the API reads. */
  maxRequestBytes: z.coerce.number().int().min(1024).default(4 * 1024 * 1024),
  /** TASK_MAX_BATCH_SIZE: most tasks one CreateTasks call may carry. */
  maxBatchSize: z.coerce.number().int().min(1).default(5000),
  /** TASK_DB_POOL_SIZE: PostgreSQL connections per process for the API and store. */
  dbPoolSize: z.coerce.number().int().min(1).default(10),
  /** TASK_METRICS_PORT: `serve` exposes /metrics on this port (0: off; the API server always has /metrics). */
  metricsPort: z.coerce.number().int().min(0).max(65535).default(0),
  /** TASK_WORKERS: jobs a worker process runs at once (`serve -n`, `up --workers`). */
  workerConcurrency: z.coerce.number().int().min(0).max(1000).default(10),
  /**
   * TASK_OUTCOME_FLUSH_MS: a worker records attempt outcomes write-behind, in batches flushed this
   * often (one statement per batch, see src/worker/outcome-writer.ts); a crash before the flush is a
   * lost attempt the reconciler retries. 0 flushes at once (still coalescing what finished together).
   */
  outcomeFlushMs: z.coerce.number().int().min(0).max(60_000).default(2),
  /**
   * TASK_QUEUES: the queues a worker process serves (`serve --queues a,b`), comma-separated. Default
   * `default` only: a task in a queue no live worker serves waits QUEUED (ListQueues shows 0 workers).
   */
  workerQueues: commaList
    .pipe(z.array(z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,63}$/, "each queue name is 1-64 of a-z, 0-9, _ - . starting with a letter or digit")).min(1, "name at least one queue"))
    .default(["default"]),
  /**
   * TASK_PRIORITY_AGING_MS: a waiting task's effective priority rises by 1 for every this many ms it
   * has been due, so low priorities do not starve (0: no aging). Applied by the reconcile pass.
   */
  priorityAgingMs: z.coerce.number().int().min(0).default(60_000),
  /** TASK_BACKOFF_BASE_MS: delay before the first retry; doubles each attempt, with jitter. */
  backoffBaseMs: z.coerce.number().int().min(1).default(1_000),
  /** TASK_BACKOFF_MAX_MS: longest delay between attempts. */
  backoffMaxMs: z.coerce.number().int().min(1).default(300_000),
  /** TASK_SHUTDOWN_GRACE_MS: on SIGTERM, how long running attempts may finish before they are aborted and released. */
  shutdownGraceMs: z.coerce.number().int().min(0).default(30_000),
  /** TASK_HEARTBEAT_MS: how often a worker records that its running tasks are alive. */
  heartbeatIntervalMs: z.coerce.number().int().min(100).default(3_000),
  /** TASK_LEASE_MS: a running task whose heartbeat is older than this is treated as lost by the reconciler. */
  leaseMs: z.coerce.number().int().min(1_000).default(15_000),
  /** TASK_RECONCILE_CRON: graphile-worker cron schedule of the full reconcile pass (lost attempts, missing jobs, pending cancels). */
  reconcileCron: z
    .string()
    .regex(/^\S+ \S+ \S+ \S+ \S+$/, "must be a 5-field cron schedule, e.g. '* * * * *'")
    .default("* * * * *"),
  /**
   * TASK_RECONCILE_INTERVAL_MS: how often each worker process checks for exited workers and lost
   * attempts (cron runs at most once a minute); 0 turns it off.
   */
  reconcileIntervalMs: z.coerce.number().int().min(0).default(1_000),
  /** TASK_RETAIN_SUCCEEDED_MS: SUCCEEDED tasks finished longer ago than this are deleted with their history and logs (`--retain-succeeded`); 0 keeps them. */
  retainSucceededMs: z.coerce.number().int().min(0).default(7 * 24 * 3600 * 1000),
  /** TASK_RETAIN_FAILED_MS: the same for FAILED tasks (`--retain-failed`); 0 keeps them. */
  retainFailedMs: z.coerce.number().int().min(0).default(30 * 24 * 3600 * 1000),
  /** TASK_RETAIN_CANCELLED_MS: the same for CANCELLED tasks (`--retain-cancelled`); 0 keeps them. */
  retainCancelledMs: z.coerce.number().int().min(0).default(30 * 24 * 3600 * 1000),
  /** TASK_RETENTION_CRON: graphile-worker cron schedule of the retention pass (run by one worker at a time). */
  retentionCron: z
    .string()
    .regex(/^\S+ \S+ \S+ \S+ \S+$/, "must be a 5-field cron schedule, e.g. '*/5 * * * *'")
    .default("*/5 * * * *"),
  /** TASK_RETENTION_BATCH: tasks deleted per statement by the retention pass (small batches keep locks short). */
  retentionBatchSize: z.coerce.number().int().min(1).max(100_000).default(1_000),
  /** TASK_POLL_INTERVAL_MS: how often workers poll for due jobs (new jobs also arrive by LISTEN/NOTIFY). */
  pollIntervalMs: z.coerce.number().int().min(50).default(2_000),
  /**
   * TASK_MAX_LOG_LINES: output lines kept per attempt: the first half and the last half, with one
   * marker line between saying how many were dropped.
   */
  maxLogLinesPerTask: z.coerce.number().int().min(2).default(10_000),
  /** TASK_MAX_LOG_BYTES: output kept per attempt (characters), halved the same way as the lines. */
  maxLogBytesPerTask: z.coerce.number().int().min(64 * 1024).default(16 * 1024 * 1024),
  /** TASK_SHELL_KILL_GRACE_MS: after SIGTERM to a shell task's process group, wait this long before SIGKILL. */
  shellKillGraceMs: z.coerce.number().int().min(0).default(5_000),
  /**
   * TASK_SHELL_USER: the user shell commands run as (a name or uid from /etc/passwd). Unset: `nobody`
   * when the service runs as root, otherwise the service's own user (switching needs root).
   */
  shellUser: z.string().min(1).optional(),
  /**
   * TASK_SPOOL_DIR: where a worker keeps outcomes it could not record yet (the database was away),
   * so a restart does not lose them (default DATA_DIR/spool).
   */
  spoolDir: z.string().min(1).optional(),
  /** SMTP_URL: e.g. smtp://user:pass@host:587. Unset: send_email writes .eml files to the outbox. */
  smtpUrl: z.string().url().optional(),
  /** SMTP_FROM: sender used when a send_email task gives none. */
  smtpFrom: z.string().min(3).default("task-service@localhost"),
  /** TASK_OUTBOX_DIR: where send_email writes .eml files without SMTP_URL (default DATA_DIR/outbox). */
  outboxDir: z.string().min(1).optional(),
  /**
   * TASK_QUERY_TARGETS: databases run_query may use, as name=postgres-url pairs separated by
   * whitespace or commas. With the embedded database, "playground" is added automatically.
   */
  queryTargets: z
    .union([z.record(z.string(), z.string()), z.string()])
    .transform((v, ctx) => (typeof v === "string" ? parseTargets(v, ctx) : v))
    .default({}),
  /** TASK_QUERY_WRITABLE_TARGETS: targets where run_query may use read_only=false. */
  queryWritableTargets: commaList.default([]),
  /** TASK_QUERY_STATEMENT_TIMEOUT_MS: upper bound for one run_query statement. */
  queryStatementTimeoutMs: z.coerce.number().int().min(1).default(30_000),
  /** TASK_QUERY_MAX_READ_BYTES: most bytes run_query reads per statement; past it, rows are no longer counted. */
  queryMaxReadBytes: z.coerce.number().int().min(1024).default(64 * 1024 * 1024),
  /** TASK_MAX_RESULT_BYTES: largest task result stored, as JSON; run_query keeps fewer rows, other results are replaced by a note. */
  maxResultBytes: z.coerce.number().int().min(1024).default(1024 * 1024),
  /** TASK_HTTP_HEADERS_TIMEOUT_MS: a connection must send its first bytes, and HTTP/1.1 request headers, within this. */
  httpHeadersTimeoutMs: z.coerce.number().int().min(100).default(10_000),
  /** TASK_HTTP_REQUEST_TIMEOUT_MS: a request (headers and body) must arrive whole within this; responses may stream longer. */
  httpRequestTimeoutMs: z.coerce.number().int().min(100).default(30_000),
  /** TASK_HTTP_KEEP_ALIVE_TIMEOUT_MS: an idle HTTP/1.1 keep-alive connection is closed after this. */
  httpKeepAliveTimeoutMs: z.coerce.number().int().min(100).default(5_000),
  /** TASK_HTTP2_IDLE_TIMEOUT_MS: an HTTP/2 connection with no open stream and no traffic is closed after this. */
  http2IdleTimeoutMs: z.coerce.number().int().min(100).default(60_000),
  /** TASK_HTTP2_MAX_STREAMS: concurrent streams one HTTP/2 connection may open. */
  http2MaxConcurrentStreams: z.coerce.number().int().min(1).default(100),
  /** TASK_HTTP_MAX_CONNECTIONS: open client connections the API accepts; further ones are closed at once. */
  httpMaxConnections: z.coerce.number().int().min(1).default(1_000),
  /** TASK_MAX_HEALTH_WATCHERS: open grpc.health.v1 Watch streams (unauthenticated); further ones get ResourceExhausted. */
  maxHealthWatchers: z.coerce.number().int().min(1).default(1_000),
  /** TASK_WATCH_HEARTBEAT_MS: a WatchTasks stream gets a heartbeat after this long without a message. */
  watchHeartbeatMs: z.coerce.number().int().min(100).max(300_000).default(10_000),
  /**
   * TASK_WATCH_MAX_QUEUED: changes queued for one WatchTasks stream whose reader is slow; past it
   * the stream gets one resync message instead (its memory stays bounded).
   */
  watchMaxQueued: z.coerce.number().int().min(10).max(1_000_000).default(1_000),
  /**
   * TASK_ALLOWED_HOSTS: Host header names (port ignored) the API answers when it runs without tokens,
   * against DNS rebinding. Unset: loopback names (localhost, 127.x.x.x, [::1]) on a loopback listener.
   * "*" accepts any host (not advised).
   */
  allowedHosts: commaList.default([]),
  /** TASK_EMAIL_ALLOWED_SENDERS: if set, the only `from` addresses (or @domain suffixes) send_email accepts. */
  emailAllowedSenders: commaList.default([]),
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
  corsOrigins: "TASK_CORS_ORIGINS",
  enableShell: "TASK_ENABLE_SHELL",
  maxRequestBytes: "TASK_MAX_REQUEST_BYTES",
  maxBatchSize: "TASK_MAX_BATCH_SIZE",
  dbPoolSize: "TASK_DB_POOL_SIZE",
  metricsPort: "TASK_METRICS_PORT",
  workerConcurrency: "TASK_WORKERS",
  outcomeFlushMs: "TASK_OUTCOME_FLUSH_MS",
  workerQueues: "TASK_QUEUES",
  priorityAgingMs: "TASK_PRIORITY_AGING_MS",
  backoffBaseMs: "TASK_BACKOFF_BASE_MS",
  backoffMaxMs: "TASK_BACKOFF_MAX_MS",
  shutdownGraceMs: "TASK_SHUTDOWN_GRACE_MS",
  heartbeatIntervalMs: "TASK_HEARTBEAT_MS",
  pollIntervalMs: "TASK_POLL_INTERVAL_MS",
  leaseMs: "TASK_LEASE_MS",
  reconcileCron: "TASK_RECONCILE_CRON",
  reconcileIntervalMs: "TASK_RECONCILE_INTERVAL_MS",
  retainSucceededMs: "TASK_RETAIN_SUCCEEDED_MS",
  retainFailedMs: "TASK_RETAIN_FAILED_MS",
  retainCancelledMs: "TASK_RETAIN_CANCELLED_MS",
  retentionCron: "TASK_RETENTION_CRON",
  retentionBatchSize: "TASK_RETENTION_BATCH",
  maxLogLinesPerTask: "TASK_MAX_LOG_LINES",
  maxLogBytesPerTask: "TASK_MAX_LOG_BYTES",
  shellKillGraceMs: "TASK_SHELL_KILL_GRACE_MS",
  shellUser: "TASK_SHELL_USER",
  spoolDir: "TASK_SPOOL_DIR",
  smtpUrl: "SMTP_URL",
  smtpFrom: "SMTP_FROM",
  outboxDir: "TASK_OUTBOX_DIR",
  queryTargets: "TASK_QUERY_TARGETS",
  queryWritableTargets: "TASK_QUERY_WRITABLE_TARGETS",
  queryStatementTimeoutMs: "TASK_QUERY_STATEMENT_TIMEOUT_MS",
  queryMaxReadBytes: "TASK_QUERY_MAX_READ_BYTES",
  maxResultBytes: "TASK_MAX_RESULT_BYTES",
  httpHeadersTimeoutMs: "TASK_HTTP_HEADERS_TIMEOUT_MS",
  httpRequestTimeoutMs: "TASK_HTTP_REQUEST_TIMEOUT_MS",
  httpKeepAliveTimeoutMs: "TASK_HTTP_KEEP_ALIVE_TIMEOUT_MS",
  http2IdleTimeoutMs: "TASK_HTTP2_IDLE_TIMEOUT_MS",
  http2MaxConcurrentStreams: "TASK_HTTP2_MAX_STREAMS",
  httpMaxConnections: "TASK_HTTP_MAX_CONNECTIONS",
  maxHealthWatchers: "TASK_MAX_HEALTH_WATCHERS",
  watchHeartbeatMs: "TASK_WATCH_HEARTBEAT_MS",
  watchMaxQueued: "TASK_WATCH_MAX_QUEUED",
  allowedHosts: "TASK_ALLOWED_HOSTS",
  emailAllowedSenders: "TASK_EMAIL_ALLOWED_SENDERS",
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
