import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.js";
import { runCli } from "./helpers/cli.js";

describe("configuration", () => {
  it("has safe defaults with an empty environment", () => {
    const config = loadConfig({}, {});
    expect(config).toMatchObject({ host: "127.0.0.1", port: 8080, apiTokens: [], enableShell: false, allowInsecure: false, leaseMs: 15_000, workerConcurrency: 10 });
    expect(config.databaseUrl).toBeUndefined();
  });

  it("reads the environment, with explicit overrides on top", () => {
    const config = loadConfig(
      { port: 9000 },
      { TASK_PORT: "7000", TASK_API_TOKENS: "a, b,,", TASK_ENABLE_SHELL: "yes", TASK_QUERY_TARGETS: "main=postgres://x/main reports=postgres://x/r" },
    );
    expect(config.port).toBe(9000);
    expect(config.apiTokens).toEqual(["a", "b"]);
    expect(config.enableShell).toBe(true);
    expect(config.queryTargets).toEqual({ main: "postgres://x/main", reports: "postgres://x/r" });
  });

  it.each([
    [{ TASK_PORT: "eighty" }, /TASK_PORT/],
    [{ TASK_PORT: "70000" }, /TASK_PORT/],
    [{ TASK_ENABLE_SHELL: "maybe" }, /TASK_ENABLE_SHELL/],
    [{ DATABASE_URL: "not a url" }, /DATABASE_URL/],
    [{ TASK_QUERY_TARGETS: "Main=postgres://x" }, /TASK_QUERY_TARGETS/],
    [{ TASK_RECONCILE_CRON: "every minute" }, /TASK_RECONCILE_CRON/],
    [{ LOG_LEVEL: "loud" }, /LOG_LEVEL/],
    [{ TASK_HTTP_MAX_CONNECTIONS: "0" }, /TASK_HTTP_MAX_CONNECTIONS/],
    [{ TASK_HTTP_HEADERS_TIMEOUT_MS: "soon" }, /TASK_HTTP_HEADERS_TIMEOUT_MS/],
  ])("rejects %j naming the variable, never falling back to a default", (env, message) => {
    expect(() => loadConfig({}, env)).toThrow(ConfigError);
    expect(() => loadConfig({}, env)).toThrow(message);
  });

  it("makes the CLI exit 2 with one line for a bad flag value", async () => {
    const res = await runCli(["server", "--port", "abc"]);
    expect(res.code).toBe(2);
    expect(res.stderr.trim()).toBe('error: --port: "abc" is not a port number (0-65535)');
    const workers = await runCli(["up", "--workers", "-3"]);
    expect(workers.code).toBe(2);
    expect(workers.stderr).toMatch(/--workers/);
  });
});
