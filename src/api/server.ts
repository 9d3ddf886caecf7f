import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { sql } from "kysely";
import { isLoopbackHost, type Config } from "../config.js";
import type { Logger } from "../logger.js";
import { bearerAuthInterceptor } from "./auth.js";
import { errorMappingInterceptor, routes } from "./routes.js";
import type { Metrics } from "../metrics.js";
import { taskStatuses } from "../store/schema.js";
import { keepTaskCountsFolded } from "../store/task-counts.js";
import { countTasksByStatus } from "../store/tasks.js";
import { metricsInterceptor } from "./metrics-interceptor.js";
import { TaskEvents } from "./task-events.js";
import type { TaskServiceDeps } from "./task-service.js";

/** What the API server needs. */
export interface ApiServerDeps extends Omit<TaskServiceDeps, "events"> {
  /** Exposed at /metrics, with RPC counts and a tasks-by-status gauge added. */
  metrics?: Metrics;
  /** For LISTEN (WatchTask wake-ups); without it, watchers poll. */
  databaseUrl?: string;
  config: Pick<Config, "host" | "port" | "apiTokens" | "allowInsecure" | "maxRequestBytes" | "maxBatchSize">;
}

/** A listening API server. */
export interface ApiServer {
  /** Base URL, e.g. http://127.0.0.1:8080. */
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

/**
 * The request handler: Connect, gRPC and gRPC-Web routes, plus /healthz (the process is up) and
 * /readyz (the database answers).
 */
export function buildHandler(deps: TaskServiceDeps & { config: ApiServerDeps["config"]; metrics?: Metrics }): (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void {
  const interceptors = [errorMappingInterceptor(deps.logger)];
  if (deps.config.apiTokens.length > 0) interceptors.unshift(bearerAuthInterceptor(deps.config.apiTokens));
  if (deps.metrics) interceptors.unshift(metricsInterceptor(deps.metrics));
  return connectNodeAdapter({
    routes: routes(deps),
    interceptors,
    readMaxBytes: deps.config.maxRequestBytes,
    fallback(req, res) {
      const reply = (status: number, text: string) => {
        res.writeHead(status, { "content-type": "text/plain" });
        res.end(`${text}\n`);
      };
      const path = (req.url ?? "").split("?")[0];
      if (path === "/healthz") return reply(200, "ok");
      if (path === "/metrics" && deps.metrics) {
        const registry = deps.metrics.registry;
        registry.metrics().then(
          (text) => {
            res.writeHead(200, { "content-type": registry.contentType });
            res.end(text);
          },
          () => reply(500, "metrics unavailable"),
        );
        return;
      }
      if (path === "/readyz") {
        sql`select 1`.execute(deps.db.kysely).then(
          () => reply(200, "ready"),
          () => reply(503, "database unavailable"),
        );
        return;
      }
      reply(404, "not found");
    },
  });
}

/** Every HTTP/2 connection opens with "PRI * HTTP/2.0"; no HTTP/1.1 method starts with "PRI". */
const HTTP2_PREFACE_START = "PRI";

/**
 * Starts the API on one port for HTTP/1.1 and cleartext HTTP/2 (h2c with prior knowledge, as gRPC
 * clients use): the first bytes of each connection decide which server takes it.
 */
export async function startApiServer(deps: ApiServerDeps): Promise<ApiServer> {
  checkListenSecurity(deps.config);
  const events = new TaskEvents(deps.db.kysely, deps.databaseUrl, deps.logger);
  deps.metrics?.addTaskStatusGauge(() => countTasksByStatus(deps.db.kysely), taskStatuses);
  // Counts, list totals and the gauge above read task_counts plus unfolded deltas; keep those few.
  const countRollup = keepTaskCountsFolded(deps.db.kysely, deps.logger);
  const handler = buildHandler({ ...deps, events });
  const h1 = http.createServer(handler);
  const h2 = http2.createServer(handler);
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.Http2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  const front = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.once("data", (chunk) => {
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
  });
  await new Promise<void>((resolve, reject) => {
    front.once("error", reject);
    front.listen(deps.config.port, deps.config.host, () => resolve());
  });
  const port = (front.address() as net.AddressInfo).port;
  const host = deps.config.host.includes(":") ? `[${deps.config.host}]` : deps.config.host;
  const url = `http://${host}:${port}`;
  deps.logger.info({ url, auth: deps.config.apiTokens.length > 0 }, "API listening");
  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        front.close(() => resolve());
        void events.close();
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
