import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { sql } from "kysely";
import { isLoopbackHost, type Config } from "../config.js";
import type { Logger } from "../logger.js";
import { auditExportHandler } from "./audit-export.js";
import { assignRequestId, requestContextValues } from "./audit-context.js";
import { authInterceptor, Authenticator, authorizeHttp } from "./auth.js";
import { cachedFor } from "./cached.js";
import { withCors } from "./cors.js";
import { dashboardHandler } from "./dashboard.js";
import { hostAllowList } from "./host-check.js";
import { HTTP_RULES } from "./roles.js";
import { errorMappingInterceptor, routes } from "./routes.js";
import type { Metrics } from "../metrics.js";
import { taskStatuses } from "../store/schema.js";
import { keepTaskCountsFolded } from "../store/task-counts.js";
import { metricsInterceptor } from "./metrics-interceptor.js";
import { readDatabaseSnapshot } from "./metrics-snapshot.js";
import { DEFAULT_LEASE_MS } from "./queue-service.js";
import { logDownloadHandler } from "./log-download.js";
import { fileTransferHandler } from "./file-transfer.js";
import { DEFAULT_FILE_CAPS, postgresFileBytes } from "../store/files.js";
import { DEFAULT_FEED_OPTIONS, TaskFeed, type TaskFeedOptions } from "./task-feed.js";
import type { Listener } from "../store/listen.js";
import { TaskEvents } from "./task-events.js";
import type { TaskServiceDeps } from "./task-service.js";
import { AgentSessions } from "./agent-session.js";
import type { SessionTiming } from "./agent-timing.js";
import { loadServerTls } from "../tls.js";

/** What the API server needs. */
export interface ApiServerDeps extends Omit<TaskServiceDeps, "events" | "feed"> {
  /** WatchTasks tunables (tests shorten them). */
  feedOptions?: Partial<TaskFeedOptions>;
  /** Exposed at /metrics, with RPC counts and a tasks-by-status gauge added. */
  metrics?: Metrics;
  /** The process's listener (WatchTask wake-ups); without it, watchers poll. */
  listener?: Listener;
  config: Pick<
    Config,
    | "host"
    | "port"
    | "apiTokens"
    | "allowInsecure"
    | "maxRequestBytes"
    | "maxBatchSize"
    | "httpHeadersTimeoutMs"
    | "httpRequestTimeoutMs"
    | "httpKeepAliveTimeoutMs"
    | "http2IdleTimeoutMs"
    | "http2MaxConcurrentStreams"
    | "httpMaxConnections"
    | "allowedHosts"
    | "maxHealthWatchers"
  > &
    Partial<Pick<Config, "shellRole" | "shellCheckTimeoutMs" | "shellCheckConcurrency" | "shellCheckWaitMs" | "shellcheck">> &
    Partial<Pick<Config, "watchHeartbeatMs" | "watchMaxQueued">> &
    Partial<Pick<Config, "corsOrigins">> &
    Partial<Pick<Config, "tlsCert" | "tlsKey">> &
    Partial<Pick<Config, "leaseMs">> &
    Partial<Pick<Config, "filesMaxTaskBytes" | "filesMaxTotalBytes">> &
    Partial<Pick<Config, "heartbeatIntervalMs" | "backoffBaseMs" | "backoffMaxMs" | "maxResultBytes">>;
  /** AgentService session timings (tests shorten them; agent-session.ts DEFAULT_SESSION_TIMING). */
  agentTiming?: Partial<SessionTiming>;
}

/** A listening API server. */
export interface ApiServer {
  /** Base URL, e.g. http://127.0.0.1:8080 (https:// with TLS). */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Refuses configurations that would expose the API without authentication. */
export function checkListenSecurity(config: ApiServerDeps["config"]): void {
  if (!isLoopbackHost(config.host) && config.apiTokens.length === 0 && !config.allowInsecure) {
    throw new Error(
      `refusing to listen on ${config.host} without API tokens: set TASK_API_TOKENS (or --api-token), or pass --insecure to accept unauthenticated access`,
    );
  }
}

/** A request handler for both HTTP versions. */
type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

/**
 * The request handler: Connect, gRPC and gRPC-Web routes, plus /healthz (the process is up) and
 * /readyz (the database answers).
 */
export function buildHandler(
  deps: TaskServiceDeps & { config: ApiServerDeps["config"]; metrics?: Metrics; listener?: Listener; agentTiming?: Partial<SessionTiming>; agentSessions?: AgentSessions },
): Handler {
  // Every request is authenticated, tokens configured or not: without them a request that sends no
  // token is `local` (admin), and one that sends a token is that token, with its role.
  const auth = new Authenticator(deps.db.kysely, deps.config.apiTokens, deps.logger);
  const interceptors = [authInterceptor(auth, deps.db.kysely, deps.logger), errorMappingInterceptor(deps.logger)];
  if (deps.metrics) interceptors.unshift(metricsInterceptor(deps.metrics));
  const dashboard = dashboardHandler();
  const logDownload = logDownloadHandler({ db: deps.db.kysely, events: deps.events, logger: deps.logger, auth });
  const fileTransfer = fileTransferHandler({
    db: deps.db.kysely,
    bytes: postgresFileBytes(deps.db.kysely),
    caps: { perTaskBytes: deps.config.filesMaxTaskBytes ?? DEFAULT_FILE_CAPS.perTaskBytes, totalBytes: deps.config.filesMaxTotalBytes ?? DEFAULT_FILE_CAPS.totalBytes },
    logger: deps.logger,
    auth,
  });
  const auditExport = auditExportHandler({ db: deps.db.kysely, logger: deps.logger, auth });
  const hostAllowed = hostAllowList(deps.config);
  const handler = connectNodeAdapter({
    routes: routes({ ...deps, auth, health: { maxWatchers: deps.config.maxHealthWatchers } }),
    interceptors,
    contextValues: requestContextValues,
    readMaxBytes: deps.config.maxRequestBytes,
    // Unknown fields and enum names are errors, not silently dropped: a misspelt or unknown
    // status filter must not turn into "all tasks".
    jsonOptions: { ignoreUnknownFields: false },
    fallback(req, res) {
      const reply = (status: number, text: string) => {
        res.writeHead(status, { "content-type": "text/plain" });
        res.end(`${text}\n`);
      };
      const path = (req.url ?? "").split("?")[0];
      if (path === "/healthz") return reply(200, "ok");
      if (path === "/metrics" && deps.metrics) {
        const registry = deps.metrics.registry;
        // Counts across every queue and type: a reader's, and not a restricted token's.
        authorizeHttp(auth, deps.db.kysely, req.headers.authorization, HTTP_RULES.metrics, "/metrics")
          .then(async (allowed) => {
            if ("status" in allowed) return reply(allowed.status, allowed.text);
            const text = await registry.metrics();
            res.writeHead(200, { "content-type": registry.contentType });
            res.end(text);
          })
          .catch(() => reply(500, "metrics unavailable"));
        return;
      }
      if (path === "/readyz") {
        sql`select 1`.execute(deps.db.kysely).then(
          () => reply(200, "ready"),
          () => reply(503, "database unavailable"),
        );
        return;
      }
      if (logDownload(req, res)) return;
      if (fileTransfer(req, res)) return;
      if (auditExport(req, res)) return;
      if (dashboard(req, res)) return;
      reply(404, "not found");
    },
  });
  const withId: Handler = (req, res) => {
    assignRequestId(req, res);
    handler(req, res);
  };
  if (!hostAllowed) return withId;
  return (req, res) => {
    const host = req.headers[":authority"] ?? req.headers.host;
    if (hostAllowed(Array.isArray(host) ? host[0] : host)) return withId(req, res);
    res.writeHead(403, { "content-type": "text/plain" });
    res.end("forbidden: this server answers only loopback host names (set TASK_ALLOWED_HOSTS, or use API tokens)\n");
  };
}


/** How long the database reads behind /metrics (counts, queue depth and age, workers) are reused. */
const METRICS_COUNT_CACHE_MS = 5_000;

/**
 * The HTTP/1.1 and HTTP/2 servers behind the front listener, with every limit that keeps a slow or
 * idle client from holding a connection: HTTP/1.1 header, request and keep-alive timeouts;
 * HTTP/2 stream limits, a request timeout per stream and an idle timeout per connection without
 * open streams. Responses may stream for as long as they like (WatchTask, health Watch).
 */
function createProtocolServers(config: ApiServerDeps["config"], handler: Handler) {
  const requestTimeout = config.httpRequestTimeoutMs;
  const h1 = http.createServer(
    {
      headersTimeout: Math.min(config.httpHeadersTimeoutMs, requestTimeout),
      requestTimeout,
      keepAliveTimeout: config.httpKeepAliveTimeoutMs,
      // How often expired header and request timeouts are looked for (Node's default is 30 s).
      connectionsCheckingInterval: Math.min(1_000, config.httpHeadersTimeoutMs),
    },
    handler,
  );
  // Hazard: Node only starts checking header and request timeouts when the server emits
  // "listening". This server never listens (the front listener hands it connections), so without
  // this, a client sending headers one byte a minute would hold its connection forever.
  h1.emit("listening");
  const h2 = http2.createServer({ settings: { maxConcurrentStreams: config.http2MaxConcurrentStreams } }, handler);
  const sessions = new Set<http2.Http2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    let open = 0;
    session.on("stream", (stream) => {
      open++;
      // The request (headers and body) must arrive whole in time; the response may then stream.
      const timer = setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), requestTimeout).unref();
      stream.once("end", () => clearTimeout(timer));
      stream.once("close", () => {
        clearTimeout(timer);
        open--;
      });
    });
    // Fires after this long without traffic; a connection with a quiet open stream (a watcher
    // waiting for news) is left alone. close() sends GOAWAY first, so a client that was about to
    // use the connection opens a new one instead of seeing a reset.
    session.setTimeout(config.http2IdleTimeoutMs, () => {
      if (open === 0) session.close();
    });
    session.on("close", () => sessions.delete(session));
  });
  return { h1, h2, sessions };
}

/** Every HTTP/2 connection opens with "PRI * HTTP/2.0"; no HTTP/1.1 method starts with "PRI". */
const HTTP2_PREFACE_START = "PRI";

/**
 * Starts the API on one port for HTTP/1.1 and cleartext HTTP/2 (h2c with prior knowledge, as gRPC
 * clients use), or, with a certificate and key, for both over TLS (ALPN offers h2 and http/1.1):
 * the first bytes of each connection (decrypted) decide which server takes it.
 */
export async function startApiServer(deps: ApiServerDeps): Promise<ApiServer> {
  checkListenSecurity(deps.config);
  // First: a missing or bad certificate fails the start before anything else is running.
  const serverTls = loadServerTls(deps.config.tlsCert, deps.config.tlsKey);
  const events = new TaskEvents(deps.db.kysely, deps.listener, deps.logger);
  // /metrics needs a reader token when tokens are configured; its gauges read task_counts (constant
  // cost), a bounded probe per waiting queue and the workers table, cached briefly as well.
  deps.metrics?.addDatabaseGauges(cachedFor(METRICS_COUNT_CACHE_MS, () => readDatabaseSnapshot(deps.db.kysely, deps.config.leaseMs ?? DEFAULT_LEASE_MS)), taskStatuses);
  // Counts, list totals and the gauge above read task_counts plus unfolded deltas; keep those few.
  const countRollup = keepTaskCountsFolded(deps.db.kysely, deps.logger);
  const feed = new TaskFeed(deps.db.kysely, events, deps.logger, {
    ...DEFAULT_FEED_OPTIONS,
    heartbeatMs: deps.config.watchHeartbeatMs ?? DEFAULT_FEED_OPTIONS.heartbeatMs,
    maxQueued: deps.config.watchMaxQueued ?? DEFAULT_FEED_OPTIONS.maxQueued,
    ...deps.feedOptions,
  });
  // This process's agent streams, shared by AgentService and the /metrics agent gauges.
  const agentSessions = new AgentSessions(deps.listener);
  deps.metrics?.addAgentGauges(() => ({ connected: agentSessions.size, inFlight: agentSessions.inFlight() }));
  const handler = withCors(buildHandler({ ...deps, events, feed, agentSessions }), deps.config.corsOrigins ?? []);
  const { h1, h2, sessions } = createProtocolServers(deps.config, handler);
  const sockets = new Set<net.Socket>();
  const onConnection = (socket: net.Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    // A connection that says nothing at all is closed like one that never finishes its headers.
    socket.setTimeout(deps.config.httpHeadersTimeoutMs, () => socket.destroy());
    socket.once("data", (chunk) => {
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(chunk);
      const isH2 = chunk.toString("latin1", 0, HTTP2_PREFACE_START.length) === HTTP2_PREFACE_START;
      // http2 drains what is already buffered on the socket itself; http1 needs the stream flowing.
      if (isH2) {
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    });
    socket.on("error", () => socket.destroy());
  };
  // With TLS, the handshake must end within the header timeout too; a client that fails it (an
  // unknown CA, plain HTTP sent to the TLS port) is dropped by tls.Server.
  const front: net.Server = serverTls
    ? tls.createServer({ ...serverTls, ALPNProtocols: ["h2", "http/1.1"], handshakeTimeout: deps.config.httpHeadersTimeoutMs }, onConnection)
    : net.createServer(onConnection);
  // Beyond this, connections are closed as they are accepted, before they can exhaust file descriptors.
  front.maxConnections = deps.config.httpMaxConnections;
  await new Promise<void>((resolve, reject) => {
    front.once("error", reject);
    front.listen(deps.config.port, deps.config.host, () => resolve());
  });
  const port = (front.address() as net.AddressInfo).port;
  const host = deps.config.host.includes(":") ? `[${deps.config.host}]` : deps.config.host;
  const url = `${serverTls ? "https" : "http"}://${host}:${port}`;
  deps.logger.info({ url, auth: deps.config.apiTokens.length > 0, tls: serverTls !== undefined }, "API listening");
  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        front.close(() => resolve());
        h1.close(() => undefined); // stops its timeout checks; it never listened itself
        void feed.close().then(() => events.close());
        countRollup.stop();
        for (const session of sessions) session.close();
        h1.closeIdleConnections();
        // In-flight unary requests are short; give them a moment, then drop what is left.
        setTimeout(() => {
          for (const socket of sockets) socket.destroy();
        }, 2_000).unref();
      })),
  };
}
