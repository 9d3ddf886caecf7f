import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.js";
import { startTestApi, type TestApi } from "./helpers/api.js";

const APP = "http://app.example.test:3000";

let api: TestApi;
let closed: TestApi;
beforeAll(async () => {
  [api, closed] = await Promise.all([startTestApi({ config: { corsOrigins: [APP] } }), startTestApi()]);
});
afterAll(async () => {
  await api?.close();
  await closed?.close();
});

const preflight = (base: string, origin: string, headers: string) =>
  fetch(`${base}/task.v1.TaskService/CreateTask`, {
    method: "OPTIONS",
    headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": headers },
  });

describe("CORS", () => {
  it("answers a gRPC-Web preflight from an allowed origin, allowing its headers", async () => {
    const res = await preflight(api.server.url, APP, "content-type,x-grpc-web,x-user-agent,grpc-timeout,authorization");
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe(APP);
    const allowed = res.headers.get("access-control-allow-headers")!.toLowerCase().split(",");
    for (const h of ["content-type", "x-grpc-web", "x-user-agent", "grpc-timeout", "connect-protocol-version", "authorization"]) expect(allowed).toContain(h);
    expect(res.headers.get("access-control-allow-methods")).toMatch(/POST/);
  });

  it("lets the page read Connect and gRPC-Web response headers", async () => {
    const res = await fetch(`${api.server.url}/task.v1.TaskService/GetTaskStatusCounts`, {
      method: "POST",
      headers: { origin: APP, "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBe(APP);
    const exposed = res.headers.get("access-control-expose-headers")!.toLowerCase().split(",");
    for (const h of ["grpc-status", "grpc-message", "grpc-status-details-bin"]) expect(exposed).toContain(h);
    expect(await res.json()).toHaveProperty("counts");
  });

  it("sends nothing that lets another origin in", async () => {
    const res = await preflight(api.server.url, "http://evil.example.test", "content-type");
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("is off by default", async () => {
    const res = await preflight(closed.server.url, APP, "content-type");
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("rejects an origin with a path in the configuration", () => {
    expect(() => loadConfig({}, { TASK_CORS_ORIGINS: "https://app.example.com/ui" })).toThrow(ConfigError);
    expect(() => loadConfig({}, { TASK_CORS_ORIGINS: "https://app.example.com/ui" })).toThrow(/TASK_CORS_ORIGINS: each origin is \* or scheme:\/\/host/);
    expect(loadConfig({}, { TASK_CORS_ORIGINS: "https://a.example.com, http://localhost:5173" }).corsOrigins).toEqual(["https://a.example.com", "http://localhost:5173"]);
  });
});
