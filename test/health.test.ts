import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer } from "../src/api/server.js";
import { loadConfig } from "../src/config.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../src/gen/grpc/health/v1/health_pb.js";
import { createLogger } from "../src/logger.js";
import { PluginRegistry } from "../src/plugins/registry.js";
import { openDb } from "../src/store/db.js";
import { startTestApi, type TestApi } from "./helpers/api.js";

let api: TestApi;
beforeAll(async () => {
  // Tokens are configured: health checks must still work without one (probes carry none).
  api = await startTestApi({ config: { apiTokens: ["secret"] } });
});
afterAll(async () => api?.close());

const healthClient = (url: string) => createClient(Health, createGrpcTransport({ baseUrl: url }));

describe("grpc.health.v1 over gRPC", () => {
  it("reports SERVING for the server and TaskService, without a token", async () => {
    const health = healthClient(api.server.url);
    expect((await health.check({ service: "" })).status).toBe(Status.SERVING);
    expect((await health.check({ service: "task.v1.TaskService" })).status).toBe(Status.SERVING);
    const { statuses } = await health.list({});
    expect(Object.keys(statuses).sort()).toEqual(["", "task.v1.TaskService"]);
    for await (const res of health.watch({ service: "" })) {
      expect(res.status).toBe(Status.SERVING);
      break;
    }
  });

  it("answers NotFound for an unknown service, and the TaskService still needs the token", async () => {
    await expect(healthClient(api.server.url).check({ service: "nope" })).rejects.toMatchObject({ code: Code.NotFound });
    await expect(api.grpc.getTaskStatusCounts({})).rejects.toMatchObject({ code: Code.Unauthenticated });
  });

  it("reports NOT_SERVING when the database cannot be reached", async () => {
    const logger = createLogger("silent");
    const db = openDb({ connectionString: "postgres://postgres:x@127.0.0.1:1/none", connectionTimeoutMillis: 2_000 }, logger);
    const server = await startApiServer({ db, registry: new PluginRegistry([]), config: loadConfig({ port: 0 }, {}), logger });
    try {
      expect((await healthClient(server.url).check({ service: "" })).status).toBe(Status.NOT_SERVING);
    } finally {
      await server.close();
      await db.close();
    }
  });
});
