import { Code, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkListenSecurity, startApiServer } from "../src/api/server.js";
import { loadConfig, type ConfigOverrides } from "../src/config.js";
import { TaskService } from "../src/gen/task/v1/task_pb.js";
import { createLogger } from "../src/logger.js";
import { noopPlugin } from "../src/plugins/noop.js";
import { PluginRegistry } from "../src/plugins/registry.js";
import type { Plugin } from "../src/plugins/types.js";
import { openDb } from "../src/store/db.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { expectConnectError, rowCounts, taskRequest } from "./helpers/factory.js";

const bearer =
  (token: string, scheme = "Bearer"): Interceptor =>
  (next) =>
  (req) => {
    req.header.set("authorization", `${scheme} ${token}`);
    return next(req);
  };

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi({ config: { apiTokens: ["secret-1", "other-token"] }, interceptors: [bearer("secret-1")] });
});
afterAll(async () => api?.close());

/** A Connect client of the test server that sends what the interceptors add, and nothing else. */
const clientWith = (...interceptors: Interceptor[]) =>
  createClient(TaskService, createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1", interceptors }));

describe("bearer tokens", () => {
  it("rejects calls without a token and writes nothing", async () => {
    const before = await rowCounts(api.database.db.kysely);
    await expectConnectError(clientWith().createTask(taskRequest()), Code.Unauthenticated, "missing bearer token");
    await expectConnectError(clientWith().listTasks({}), Code.Unauthenticated);
    const grpc = createClient(TaskService, createGrpcTransport({ baseUrl: api.server.url }));
    await expectConnectError(grpc.getTaskStatusCounts({}), Code.Unauthenticated);
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
  });

  it.each([
    ["a wrong token of the same length", bearer("secret-2")],
    ["a longer token", bearer("secret-1-and-more")],
    ["a prefix of the token", bearer("secret")],
    ["another scheme", bearer("secret-1", "Basic")],
    ["an empty token", bearer("")],
  ])("rejects %s", async (_label, interceptor) => {
    const before = await rowCounts(api.database.db.kysely);
    await expectConnectError(clientWith(interceptor).createTask(taskRequest()), Code.Unauthenticated);
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
  });

  it("accepts any configured token, over every protocol", async () => {
    const { task } = await api.client.createTask(taskRequest());
    expect(task?.id).toBeGreaterThan(0n);
    await expect(api.grpc.getTask({ id: task!.id })).resolves.toMatchObject({ task: { id: task!.id } });
    await expect(api.grpcWeb.getTask({ id: task!.id })).resolves.toMatchObject({ task: { id: task!.id } });
    await expect(clientWith(bearer("other-token")).getTask({ id: task!.id })).resolves.toMatchObject({ task: { id: task!.id } });
  });

  it("checks the token before the request", async () => {
    // A request that would be InvalidArgument is Unauthenticated first: nothing is revealed without a token.
    await expectConnectError(clientWith().getTask({ id: 0n }), Code.Unauthenticated);
    await expectConnectError(api.client.getTask({ id: 0n }), Code.InvalidArgument);
  });
});

describe("health endpoints", () => {
  it("answers /healthz and /readyz with 200 without a token", async () => {
    const health = await fetch(`${api.server.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.text()).toMatch(/ok/);
    const ready = await fetch(`${api.server.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.text()).toMatch(/ready/);
  });

  it("answers 404 for unknown paths", async () => {
    const res = await fetch(`${api.server.url}/no-such-page`);
    expect(res.status).toBe(404);
  });

  it("reports not ready and answers Unavailable when the database cannot be reached", async () => {
    const logger = createLogger("silent");
    // Port 1 on loopback refuses connections: the database is "down".
    const db = openDb({ connectionString: "postgres://postgres:x@127.0.0.1:1/none", connectionTimeoutMillis: 2_000 }, logger);
    const config = loadConfig({ host: "127.0.0.1", port: 0 }, {});
    const server = await startApiServer({ db, registry: new PluginRegistry([noopPlugin as Plugin]), config, logger });
    try {
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
      expect((await fetch(`${server.url}/readyz`)).status).toBe(503);
      const client = createClient(TaskService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
      await expectConnectError(client.getTask({ id: 1n }), Code.Unavailable);
      await expectConnectError(client.createTask(taskRequest()), Code.Unavailable);
    } finally {
      await server.close();
      await db.close();
    }
  });
});

describe("checkListenSecurity", () => {
  const config = (overrides: ConfigOverrides) => loadConfig({ port: 0, ...overrides }, {});

  it.each(["0.0.0.0", "::", "192.168.1.10", "example.com"])("refuses %s without tokens", (host) => {
    expect(() => checkListenSecurity(config({ host }))).toThrow(/refusing to listen/);
  });

  it("allows a public address with tokens or an explicit insecure flag", () => {
    expect(() => checkListenSecurity(config({ host: "0.0.0.0", apiTokens: ["t"] }))).not.toThrow();
    expect(() => checkListenSecurity(config({ host: "0.0.0.0", apiTokens: "a,b" }))).not.toThrow();
    expect(() => checkListenSecurity(config({ host: "0.0.0.0", allowInsecure: true }))).not.toThrow();
  });

  it("treats blank token lists as no tokens", () => {
    expect(() => checkListenSecurity(config({ host: "0.0.0.0", apiTokens: " , " }))).toThrow(/refusing to listen/);
  });

  it.each(["127.0.0.1", "127.1.2.3", "localhost", "::1"])("allows loopback %s without tokens", (host) => {
    expect(() => checkListenSecurity(config({ host }))).not.toThrow();
  });
});
