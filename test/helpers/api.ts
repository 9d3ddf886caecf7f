import { createClient, createRouterTransport, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { loadConfig, type ConfigOverrides } from "../../src/config.js";
import type { Metrics } from "../../src/metrics.js";
import { authInterceptor, Authenticator } from "../../src/api/auth.js";
import { errorMappingInterceptor, routes } from "../../src/api/routes.js";
import { startApiServer, type ApiServer } from "../../src/api/server.js";
import { TaskEvents } from "../../src/api/task-events.js";
import { TaskFeed } from "../../src/api/task-feed.js";
import { TaskService } from "../../src/gen/task/v1/task_pb.js";
import { builtinPlugins } from "../../src/plugins/builtin.js";
import { openListener } from "../../src/store/listen.js";
import type { Workers } from "../../src/worker/runner.js";
import { createTestDatabase, PLAYGROUND_DATABASE, urlForDatabase, type TestDatabase } from "./database.js";
import { startTestWorkers } from "./workers.js";

/** A real API server on 127.0.0.1 and a free port, over its own test database. */
export interface TestApi {
  server: ApiServer;
  database: TestDatabase;
  /** Connect protocol over HTTP/1.1. */
  client: Client<typeof TaskService>;
  /** gRPC over h2c. */
  grpc: Client<typeof TaskService>;
  /** gRPC-Web over HTTP/1.1. */
  grpcWeb: Client<typeof TaskService>;
  close(): Promise<void>;
}

/** Options for startTestApi. */
export interface TestApiOptions {
  config?: ConfigOverrides;
  /** Sent with every client call (e.g. an Authorization header). */
  interceptors?: Interceptor[];
  metrics?: Metrics;
  /** The database to serve (default: a fresh one on the shared test cluster); close() drops it. */
  database?: () => Promise<TestDatabase>;
}

/** Starts a server with shell enabled (unless overridden) and clients for each protocol. */
export async function startTestApi(options: TestApiOptions = {}): Promise<TestApi> {
  const database = await (options.database ?? createTestDatabase)();
  const config = loadConfig(
    { host: "127.0.0.1", port: 0, enableShell: true, queryTargets: { playground: urlForDatabase(PLAYGROUND_DATABASE) }, ...options.config },
    {},
  );
  const plugins = builtinPlugins(config, database.logger);
  const listener = openListener(database.url, database.logger);
  const server = await startApiServer({ db: database.db, listener, registry: plugins.registry, config, logger: database.logger, metrics: options.metrics });
  const interceptors = options.interceptors ?? [];
  return {
    server,
    database,
    client: createClient(TaskService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors })),
    grpc: createClient(TaskService, createGrpcTransport({ baseUrl: server.url, interceptors })),
    grpcWeb: createClient(TaskService, createGrpcWebTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors })),
    async close() {
      await server.close();
      await listener.close();
      await plugins.close();
      await database.drop();
    },
  };
}

/** A test API with in-process workers (fastWorkerConfig) over its database. */
export interface TestApiWithWorkers extends TestApi {
  /** The running workers; a test that stops them to make room may start new ones and put them here. */
  workers: Workers;
  /** Stops the workers, then the server, then drops the database. */
  close(): Promise<void>;
}

/** The setup most end-to-end files share: startTestApi, then workers over the same database. */
export async function startTestApiWithWorkers(options: TestApiOptions = {}): Promise<TestApiWithWorkers> {
  const api = await startTestApi(options);
  let workers: Workers;
  try {
    workers = await startTestWorkers(api.database);
  } catch (err) {
    await api.close();
    throw err;
  }
  const withWorkers: TestApiWithWorkers = {
    ...api,
    workers,
    async close() {
      await withWorkers.workers.stop();
      await api.close();
    },
  };
  return withWorkers;
}

/** The API's handlers over a test database, called in memory: no HTTP server, no port. */
export interface InMemoryApi {
  database: TestDatabase;
  /** TaskService through Connect's router transport. */
  client: Client<typeof TaskService>;
  /** The same transport, for the other services' clients. */
  transport: Transport;
  close(): Promise<void>;
}

/**
 * Every service's handlers (the server's routes and error mapping) on Connect's router transport,
 * for tests of validation, error mapping and what a call writes, where a network adds nothing. The
 * wire (HTTP/1.1, h2c, gRPC, gRPC-Web, limits, CORS) is tested through startTestApi.
 */
export async function startInMemoryApi(options: Pick<TestApiOptions, "config"> = {}): Promise<InMemoryApi> {
  const database = await createTestDatabase();
  const config = loadConfig({ enableShell: true, queryTargets: { playground: urlForDatabase(PLAYGROUND_DATABASE) }, ...options.config }, {});
  const { db, logger } = database;
  const plugins = builtinPlugins(config, logger);
  const listener = openListener(database.url, logger);
  const events = new TaskEvents(db.kysely, listener, logger);
  const feed = new TaskFeed(db.kysely, events, logger);
  // The server's own authentication: with no tokens configured, every call is the local admin.
  const auth = new Authenticator(db.kysely, config.apiTokens, logger);
  const transport = createRouterTransport(
    routes({ db, events, feed, registry: plugins.registry, config, logger, auth, health: { maxWatchers: config.maxHealthWatchers } }),
    { router: { interceptors: [authInterceptor(auth, db.kysely, logger), errorMappingInterceptor(logger)], readMaxBytes: config.maxRequestBytes } },
  );
  return {
    database,
    client: createClient(TaskService, transport),
    transport,
    async close() {
      await feed.close();
      await events.close();
      await listener.close();
      await plugins.close();
      await database.drop();
    },
  };
}
