import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { loadConfig, type ConfigOverrides } from "../../src/config.js";
import type { Metrics } from "../../src/metrics.js";
import { startApiServer, type ApiServer } from "../../src/api/server.js";
import { TaskService } from "../../src/gen/task/v1/task_pb.js";
import { builtinPlugins } from "../../src/plugins/builtin.js";
import { openListener } from "../../src/store/listen.js";
import { createTestDatabase, PLAYGROUND_DATABASE, urlForDatabase, type TestDatabase } from "./database.js";

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
