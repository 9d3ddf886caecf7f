import { createRequire } from "node:module";
import { z } from "zod";
import { parseDuration } from "./duration.js";
import { QUEUE_NAME_PATTERN, QUEUE_NAME_RULE } from "./field-rules.js";
import { labelPairs, parseLabels } from "./labels.js";

/** package.json's version: one directory up from both src/config.ts and dist/config.js. */
const PACKAGE_VERSION = (createRequire(import.meta.url)("../package.json") as { version: string }).version;

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

/** The roles a TASK_API_TOKENS entry may name (the same as src/store/schema.ts apiRoles). */
const TOKEN_ROLES = ["reader", "operator", "admin"] as const;
/** A token's name: the rule of queue names (it appears in logs and, later, audit rows). */
const TOKEN_NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

/** One TASK_API_TOKENS entry: a named one with its role, or a plain token (admin, named config-N by position). */
export interface ConfiguredToken {
  name: string;
  role: (typeof TOKEN_ROLES)[number];
  token: string;
}

/**
 * Reads TASK_API_TOKENS entries: `name:role:token` is a named token with a role; anything else is a
 * plain token, admin, as every token was before roles existed (so existing installs keep working).
 * An entry that looks named (`ci:superuser:...`) but names no role is an error rather than a plain
 * admin token, so a misspelt role never grants admin.
 */
export function parseApiTokenEntries(entries: readonly string[]): { tokens: ConfiguredToken[]; problems: string[] } {
  const tokens: ConfiguredToken[] = [];
  const problems: string[] = [];
  entries.forEach((entry, i) => {
    const named = /^([^:\s]+):([a-z]+):(\S.*)$/.exec(entry);
    if (named && TOKEN_NAME.test(named[1]!)) {
      const [, name, role, token] = named as unknown as [string, string, string, string];
      if (!(TOKEN_ROLES as readonly string[]).includes(role)) problems.push(`entry ${i + 1} (${name}): unknown role "${role}" (roles: ${TOKEN_ROLES.join(", ")})`);
      else tokens.push({ name, role: role as ConfiguredToken["role"], token });
    } else {
      tokens.push({ name: `config-${i + 1}`, role: "admin", token: entry });
    }
  });
  const seen = new Set<string>();
  for (const t of tokens) {
    if (seen.has(t.name)) problems.push(`the name ${t.name} is used twice`);
    seen.add(t.name);
  }
  return { tokens, problems };
}

/** A setting: the environment variable it is read from, beside the schema (and default) of its value. */
function setting<S extends z.ZodType>(env: string, schema: S): { env: string; schema: S } {
  return { env, schema };
}

/** The log levels, most verbose first (LOG_LEVEL, --log-level). */
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;

/**
 * Every setting of the service: the environment variable it is read from, its schema and default.
 * This module is the only reader of process.env; everything else receives a Config (or an env object
 * it passes here) and names a variable through configEnvNames or clientEnvNames.
 */
const settings = {
  /** PostgreSQL to use. Unset: `server`/`up` start an embedded PostgreSQL under dataDir. */
  databaseUrl: setting("DATABASE_URL", z.string().url().optional()),
  /** Where the embedded PostgreSQL keeps its data (and the email outbox). */
  dataDir: setting("TASK_DATA_DIR", z.string().min(1).default("./.task")),
  /** Address the API listens on. Loopback by default; anything else needs tokens or allowInsecure. */
  host: setting("TASK_HOST", z.string().min(1).default("127.0.0.1")),
  /** Port the API listens on (0 picks a free one). */
  port: setting("TASK_PORT", z.coerce.number().int().min(0).max(65535).default(8080)),
  /**
   * Comma-separated bearer tokens; when set, every RPC must present one (these or a token made by
   * `task-cli token create`). `name:role:token` entries have a name and a role (reader, operator,
   * admin); a plain token is admin.
   */
  apiTokens: setting(
    "TASK_API_TOKENS",
    commaList
      .superRefine((entries, ctx) => {
        for (const problem of parseApiTokenEntries(entries).problems) ctx.addIssue({ code: "custom", message: problem });
      })
      .default([]),
  ),
  /**
   * PEM certificate chain the API serves over HTTPS (with TASK_TLS_KEY): HTTP/2 by ALPN and
   * HTTP/1.1 on the one port. Unset: plain HTTP (and h2c). Read at start; a renewal needs a restart.
   */
  tlsCert: setting("TASK_TLS_CERT", z.string().min(1).optional()),
  /** PEM private key of TASK_TLS_CERT. */
  tlsKey: setting("TASK_TLS_KEY", z.string().min(1).optional()),
  /** Allow a non-loopback listen address without API tokens. */
  allowInsecure: setting("TASK_ALLOW_INSECURE", envBoolean.default(false)),
  /**
   * Comma-separated browser origins (e.g. https://app.example.com, or *) that may call
   * the API from their pages (Connect, gRPC-Web). Empty: no CORS headers, browsers refuse cross-origin calls.
   */
  corsOrigins: setting(
    "TASK_CORS_ORIGINS",
    commaList
      .pipe(z.array(z.string().regex(/^(\*|https?:\/\/[^/\s]+)$/, "each origin is * or scheme://host[:port], without a path")))
      .default([]),
  ),
  /** Allow the shell task type (remote code execution by design). */
  enableShell: setting("TASK_ENABLE_SHELL", envBoolean.default(false)),
  /** The least role that may create (or retry) shell tasks: operator or admin (`--shell-role`). */
  shellRole: setting("TASK_SHELL_ROLE", z.enum(["operator", "admin"]).default("admin")),
  /** Largest request body the API reads. */
  maxRequestBytes: setting("TASK_MAX_REQUEST_BYTES", z.coerce.number().int().min(1024).default(4 * 1024 * 1024)),
  /** Most tasks one CreateTasks call may carry. */
  maxBatchSize: setting("TASK_MAX_BATCH_SIZE", z.coerce.number().int().min(1).default(5000)),
  /** PostgreSQL connections per process for the API and store. */
  dbPoolSize: setting("TASK_DB_POOL_SIZE", z.coerce.number().int().min(1).default(10)),
  /** `serve` exposes /metrics on this port (0: off; the API server always has /metrics). */
  metricsPort: setting("TASK_METRICS_PORT", z.coerce.number().int().min(0).max(65535).default(0)),
  /** Jobs a worker process runs at once (`serve -n`, `up --workers`). */
  workerConcurrency: setting("TASK_WORKERS", z.coerce.number().int().min(0).max(1000).default(10)),
  /**
   * A worker records attempt outcomes write-behind, in batches flushed this
   * often (one statement per batch, see src/worker/outcome-writer.ts); a crash before the flush is a
   * lost attempt the reconciler retries. 0 flushes at once (still coalescing what finished together).
   */
  outcomeFlushMs: setting("TASK_OUTCOME_FLUSH_MS", z.coerce.number().int().min(0).max(60_000).default(2)),
  /**
   * The queues a worker process serves (`serve --queues a,b`), comma-separated. Default
   * `default` only: a task in a queue no live worker serves waits QUEUED (ListQueues shows 0 workers).
   */
  workerQueues: setting(
    "TASK_QUEUES",
    commaList
      .pipe(z.array(z.string().regex(QUEUE_NAME_PATTERN, `each queue name is ${QUEUE_NAME_RULE}`)).min(1, "name at least one queue"))
      .default(["default"]),
  ),
  /**
   * A worker process's labels (`serve --labels region=eu,gpu=true`), comma-separated key=value
   * pairs: it claims tasks whose labels are all among them, and tasks without labels. Default none
   * (only tasks without labels). Stored as sorted "key=value" pairs (src/labels.ts).
   */
  workerLabels: setting(
    "TASK_WORKER_LABELS",
    z
      .union([z.array(z.string()), z.string()])
      .transform((v, ctx) => {
        try {
          return labelPairs(parseLabels(Array.isArray(v) ? v.join(",") : v));
        } catch (err) {
          ctx.addIssue({ code: "custom", message: (err as Error).message });
          return z.NEVER;
        }
      })
      .default([]),
  ),
  /**
   * A waiting task's effective priority rises by 1 for every this many ms it
   * has been due, so low priorities do not starve (0: no aging). Applied by the reconcile pass.
   */
  priorityAgingMs: setting("TASK_PRIORITY_AGING_MS", z.coerce.number().int().min(0).default(60_000)),
  /** Delay before the first retry; doubles each attempt, with jitter. */
  backoffBaseMs: setting("TASK_BACKOFF_BASE_MS", z.coerce.number().int().min(1).default(1_000)),
  /** Longest delay between attempts. */
  backoffMaxMs: setting("TASK_BACKOFF_MAX_MS", z.coerce.number().int().min(1).default(300_000)),
  /** On SIGTERM, how long running attempts may finish before they are aborted and released. */
  shutdownGraceMs: setting("TASK_SHUTDOWN_GRACE_MS", z.coerce.number().int().min(0).default(30_000)),
  /** How often a worker records that its running tasks are alive. */
  heartbeatIntervalMs: setting("TASK_HEARTBEAT_MS", z.coerce.number().int().min(100).default(3_000)),
  /** A running task whose heartbeat is older than this is treated as lost by the reconciler. */
  leaseMs: setting("TASK_LEASE_MS", z.coerce.number().int().min(1_000).default(15_000)),
  /** Graphile-worker cron schedule of the full reconcile pass (lost attempts, missing jobs, pending cancels). */
  reconcileCron: setting(
    "TASK_RECONCILE_CRON",
    z
      .string()
      .regex(/^\S+ \S+ \S+ \S+ \S+$/, "must be a 5-field cron schedule, e.g. '* * * * *'")
      .default("* * * * *"),
  ),
  /**
   * How often each worker process checks for exited workers and lost
   * attempts (cron runs at most once a minute); 0 turns it off.
   */
  reconcileIntervalMs: setting("TASK_RECONCILE_INTERVAL_MS", z.coerce.number().int().min(0).default(1_000)),
  /** SUCCEEDED tasks finished longer ago than this are deleted with their history and logs (`--retain-succeeded`); 0 keeps them. */
  retainSucceededMs: setting("TASK_RETAIN_SUCCEEDED_MS", z.coerce.number().int().min(0).default(7 * 24 * 3600 * 1000)),
  /** The same for FAILED tasks (`--retain-failed`); 0 keeps them. */
  retainFailedMs: setting("TASK_RETAIN_FAILED_MS", z.coerce.number().int().min(0).default(30 * 24 * 3600 * 1000)),
  /** The same for CANCELLED tasks (`--retain-cancelled`); 0 keeps them. */
  retainCancelledMs: setting("TASK_RETAIN_CANCELLED_MS", z.coerce.number().int().min(0).default(30 * 24 * 3600 * 1000)),
  /** The same for EXPIRED tasks (`--retain-expired`); 0 keeps them. */
  retainExpiredMs: setting("TASK_RETAIN_EXPIRED_MS", z.coerce.number().int().min(0).default(30 * 24 * 3600 * 1000)),
  /**
   * Audit rows (src/store/audit.ts) older than this are deleted by the retention pass: a duration
   * ("90d", "12h") or a number of seconds; 0 keeps them forever.
   */
  auditRetentionMs: setting(
    "TASK_AUDIT_RETENTION",
    z
      .union([z.number(), z.string()])
      .transform((v, ctx) => {
        const ms = typeof v === "number" ? v : /^(0|forever)$/.test(v.trim()) ? 0 : parseDuration(v);
        if (ms === undefined || !(ms >= 0)) {
          ctx.addIssue({ code: "custom", message: `"${v}" is not a duration such as 90d, 12h or 0 (keep forever)` });
          return z.NEVER;
        }
        return ms;
      })
      .default(90 * 24 * 3600 * 1000),
  ),
  /** Graphile-worker cron schedule of the retention pass (run by one worker at a time). */
  retentionCron: setting(
    "TASK_RETENTION_CRON",
    z
      .string()
      .regex(/^\S+ \S+ \S+ \S+ \S+$/, "must be a 5-field cron schedule, e.g. '*/5 * * * *'")
      .default("*/5 * * * *"),
  ),
  /** Tasks deleted per statement by the retention pass (small batches keep locks short). */
  retentionBatchSize: setting("TASK_RETENTION_BATCH", z.coerce.number().int().min(1).max(100_000).default(1_000)),
  /** How often workers poll for due jobs (new jobs also arrive by LISTEN/NOTIFY). */
  pollIntervalMs: setting("TASK_POLL_INTERVAL_MS", z.coerce.number().int().min(50).default(2_000)),
  /**
   * Output lines kept per attempt: the first half and the last half, with one
   * marker line between saying how many were dropped.
   */
  maxLogLinesPerTask: setting("TASK_MAX_LOG_LINES", z.coerce.number().int().min(2).default(10_000)),
  /** Output kept per attempt (characters), halved the same way as the lines. */
  maxLogBytesPerTask: setting("TASK_MAX_LOG_BYTES", z.coerce.number().int().min(64 * 1024).default(16 * 1024 * 1024)),
  /** Bytes one task's files may hold: its inputs together, and each attempt's outputs together. */
  filesMaxTaskBytes: setting("TASK_FILES_MAX_TASK_BYTES", z.coerce.number().int().min(1).default(1024 * 1024 * 1024)),
  /** Bytes every stored file together may hold (inputs, outputs, uploads not yet taken). */
  filesMaxTotalBytes: setting("TASK_FILES_MAX_TOTAL_BYTES", z.coerce.number().int().min(1).default(50 * 1024 * 1024 * 1024)),
  /** Uploads no task took, and files left incomplete (a cut-off upload or export), are deleted after this long. */
  uploadTtlMs: setting("TASK_UPLOAD_TTL_MS", z.coerce.number().int().min(1_000).default(3_600_000)),
  /** After SIGTERM to a shell task's process group, wait this long before SIGKILL. */
  shellKillGraceMs: setting("TASK_SHELL_KILL_GRACE_MS", z.coerce.number().int().min(0).default(5_000)),
  /**
   * The user shell commands run as (a name or uid from /etc/passwd). Unset: `nobody`
   * when the service runs as root, otherwise the service's own user (switching needs root).
   */
  shellUser: setting("TASK_SHELL_USER", z.string().min(1).optional()),
  /** Each create-time check of a shell command (bash -n, shellcheck) is killed after this long. */
  shellCheckTimeoutMs: setting("TASK_SHELL_CHECK_TIMEOUT_MS", z.coerce.number().int().min(1).max(60_000).default(2_000)),
  /** Shell command checks running at once in one API process (each is a child process). */
  shellCheckConcurrency: setting("TASK_SHELL_CHECK_CONCURRENCY", z.coerce.number().int().min(1).max(256).default(4)),
  /** How long a create waits for a free check slot before it fails with ResourceExhausted. */
  shellCheckWaitMs: setting("TASK_SHELL_CHECK_WAIT_MS", z.coerce.number().int().min(0).max(60_000).default(1_000)),
  /** Run shellcheck (when installed) on shell commands at create, returning its findings as warnings. */
  shellcheck: setting("TASK_SHELLCHECK", envBoolean.default(true)),
  /**
   * Where a worker keeps outcomes it could not record yet (the database was away),
   * so a restart does not lose them (default DATA_DIR/spool).
   */
  spoolDir: setting("TASK_SPOOL_DIR", z.string().min(1).optional()),
  /**
   * Where a remote agent (`task-cli agent`) keeps outcomes (and output past its memory cap) until
   * the control plane accepts them, and its id, so a restart reports them (default: the OS
   * temporary directory's task-agent/NAME).
   */
  agentSpoolDir: setting("TASK_AGENT_SPOOL_DIR", z.string().min(1).optional()),
  /** The version agents report (`workers` shows it): this build's package version unless set. */
  version: setting("TASK_VERSION", z.string().min(1).max(100).default(PACKAGE_VERSION)),
  /** E.g. smtp://user:pass@host:587. Unset: send_email writes .eml files to the outbox. */
  smtpUrl: setting("SMTP_URL", z.string().url().optional()),
  /** Sender used when a send_email task gives none. */
  smtpFrom: setting("SMTP_FROM", z.string().min(3).default("task-service@localhost")),
  /** Where send_email writes .eml files without SMTP_URL (default DATA_DIR/outbox). */
  outboxDir: setting("TASK_OUTBOX_DIR", z.string().min(1).optional()),
  /**
   * Databases run_query may use, as name=postgres-url pairs separated by
   * whitespace or commas. With the embedded database, "playground" is added automatically.
   */
  queryTargets: setting(
    "TASK_QUERY_TARGETS",
    z
      .union([z.record(z.string(), z.string()), z.string()])
      .transform((v, ctx) => (typeof v === "string" ? parseTargets(v, ctx) : v))
      .default({}),
  ),
  /** Targets where run_query may use read_only=false. */
  queryWritableTargets: setting("TASK_QUERY_WRITABLE_TARGETS", commaList.default([])),
  /** Upper bound for one run_query statement. */
  queryStatementTimeoutMs: setting("TASK_QUERY_STATEMENT_TIMEOUT_MS", z.coerce.number().int().min(1).default(30_000)),
  /** Most bytes run_query reads per statement; past it, rows are no longer counted. */
  queryMaxReadBytes: setting("TASK_QUERY_MAX_READ_BYTES", z.coerce.number().int().min(1024).default(64 * 1024 * 1024)),
  /** Largest task result stored, as JSON; run_query keeps fewer rows, other results are replaced by a note. */
  maxResultBytes: setting("TASK_MAX_RESULT_BYTES", z.coerce.number().int().min(1024).default(1024 * 1024)),
  /** A connection must send its first bytes, and HTTP/1.1 request headers, within this. */
  httpHeadersTimeoutMs: setting("TASK_HTTP_HEADERS_TIMEOUT_MS", z.coerce.number().int().min(100).default(10_000)),
  /** A request (headers and body) must arrive whole within this; responses may stream longer. */
  httpRequestTimeoutMs: setting("TASK_HTTP_REQUEST_TIMEOUT_MS", z.coerce.number().int().min(100).default(30_000)),
  /** An idle HTTP/1.1 keep-alive connection is closed after this. */
  httpKeepAliveTimeoutMs: setting("TASK_HTTP_KEEP_ALIVE_TIMEOUT_MS", z.coerce.number().int().min(100).default(5_000)),
  /** An HTTP/2 connection with no open stream and no traffic is closed after this. */
  http2IdleTimeoutMs: setting("TASK_HTTP2_IDLE_TIMEOUT_MS", z.coerce.number().int().min(100).default(60_000)),
  /** Concurrent streams one HTTP/2 connection may open. */
  http2MaxConcurrentStreams: setting("TASK_HTTP2_MAX_STREAMS", z.coerce.number().int().min(1).default(100)),
  /** Open client connections the API accepts; further ones are closed at once. */
  httpMaxConnections: setting("TASK_HTTP_MAX_CONNECTIONS", z.coerce.number().int().min(1).default(1_000)),
  /** Open grpc.health.v1 Watch streams (unauthenticated); further ones get ResourceExhausted. */
  maxHealthWatchers: setting("TASK_MAX_HEALTH_WATCHERS", z.coerce.number().int().min(1).default(1_000)),
  /** A WatchTasks stream gets a heartbeat after this long without a message. */
  watchHeartbeatMs: setting("TASK_WATCH_HEARTBEAT_MS", z.coerce.number().int().min(100).max(300_000).default(10_000)),
  /**
   * Changes queued for one WatchTasks stream whose reader is slow; past it
   * the stream gets one resync message instead (its memory stays bounded).
   */
  watchMaxQueued: setting("TASK_WATCH_MAX_QUEUED", z.coerce.number().int().min(10).max(1_000_000).default(1_000)),
  /**
   * Host header names (port ignored) the API answers when it runs without tokens,
   * against DNS rebinding. Unset: loopback names (localhost, 127.x.x.x, [::1]) on a loopback listener.
   * "*" accepts any host (not advised).
   */
  allowedHosts: setting("TASK_ALLOWED_HOSTS", commaList.default([])),
  /** If set, the only `from` addresses (or @domain suffixes) send_email accepts. */
  emailAllowedSenders: setting("TASK_EMAIL_ALLOWED_SENDERS", commaList.default([])),
  /** Trace, debug, info, warn, error, fatal or silent. */
  logLevel: setting("LOG_LEVEL", z.enum(LOG_LEVELS).default("info")),
  /**
   * Traces (src/tracing.ts) are exported over OTLP/HTTP when one of the two endpoints is set or
   * OTEL_TRACES_EXPORTER is `otlp`; `none` turns them off whatever else is set. Off by default.
   */
  otelTracesExporter: setting("OTEL_TRACES_EXPORTER", z.enum(["otlp", "none"]).optional()),
  /** The OTLP/HTTP collector's base URL; traces go to its /v1/traces (default http://localhost:4318). */
  otelEndpoint: setting("OTEL_EXPORTER_OTLP_ENDPOINT", z.string().url().optional()),
  /** The full URL traces are posted to; wins over OTEL_EXPORTER_OTLP_ENDPOINT. */
  otelTracesEndpoint: setting("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", z.string().url().optional()),
  /** How spans are encoded: http/protobuf (the OTLP default) or http/json. */
  otelProtocol: setting("OTEL_EXPORTER_OTLP_PROTOCOL", z.enum(["http/protobuf", "http/json"]).default("http/protobuf")),
  /** The traced process's service.name. */
  otelServiceName: setting("OTEL_SERVICE_NAME", z.string().min(1).default("task-service")),
};

type Schemas<T extends Record<string, { schema: z.ZodType }>> = { [K in keyof T]: T[K]["schema"] };

/** The schema of the whole configuration. */
export const configSchema = z.object(
  Object.fromEntries(Object.entries(settings).map(([key, s]) => [key, s.schema])) as Schemas<typeof settings>,
);

/** The resolved configuration. */
export type Config = z.infer<typeof configSchema>;
/** Settings given explicitly (CLI flags, tests); they win over the environment. */
export type ConfigOverrides = Partial<z.input<typeof configSchema>>;


/** Each setting's environment variable. */
export const configEnvNames = Object.fromEntries(Object.entries(settings).map(([key, s]) => [key, s.env])) as Record<keyof Config, string>;

/**
 * The CLI's own variables, for commands that call a running server: commander reads them as the
 * defaults of the global flags (src/cli/program.ts), so they have no schema here.
 */
export const clientEnvNames = {
  /** --address: API address of a running server (default http://127.0.0.1:8080). */
  address: "TASK_ADDRESS",
  /** --token: bearer token sent to the server, one of its TASK_API_TOKENS. */
  token: "TASK_TOKEN",
  /** --ca: PEM file of the CA that signed the server's certificate, trusted for https:// addresses (default: Node's trust store). */
  ca: "TASK_CA",
} as const;

/** A setting's variable as `env` (default: this process's) gives it; undefined when unset or empty, which loadConfig ignores. */
export function envSetting(key: keyof Config, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const value = env[configEnvNames[key]];
  return value === "" ? undefined : value;
}

/** Raised when a setting is invalid; the message names the variable and the problem. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Reads the configuration from the environment, with explicit overrides on top. */
export function loadConfig(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): Config {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(configEnvNames) as (keyof Config)[]) {
    const value = envSetting(key, env);
    if (value !== undefined) raw[key] = value;
  }
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) raw[key] = value;
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? "");
      const name = configEnvNames[key as keyof Config] ?? key;
      return `${name}: ${issue.message}`;
    });
    throw new ConfigError(`invalid configuration: ${problems.join("; ")}`);
  }
  return parsed.data;
}

/** Whether the host is a loopback address, which is safe to serve without tokens. */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
