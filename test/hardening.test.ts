import http from "node:http";
import http2 from "node:http2";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startApiServer, type ApiServer } from "../src/api/server.js";
import { loadConfig } from "../src/config.js";
import { Health } from "../src/gen/grpc/health/v1/health_pb.js";
import { TaskService, TaskStatus, type Task } from "../src/gen/task/v1/task_pb.js";
import { Metrics } from "../src/metrics.js";
import { builtinPlugins } from "../src/plugins/builtin.js";
import { recordOrFailWithReason } from "../src/worker/result.js";
import { claimAttempt, recordOutcome, type AttemptOutcome } from "../src/store/lifecycle/index.js";
import { startTestApi, startTestApiWithWorkers, type TestApiWithWorkers } from "./helpers/api.js";
import { expectConnectError, rowCounts } from "./helpers/factory.js";
import { waitFor } from "./helpers/wait.js";

let api: TestApiWithWorkers;

beforeAll(async () => {
  api = await startTestApiWithWorkers({ config: { emailAllowedSenders: ["@example.com"] }, metrics: new Metrics() });
});

afterAll(() => api?.close());

async function waitForStatus(id: bigint, status: TaskStatus): Promise<Task> {
  return waitFor(async () => {
    const { task } = await api.client.getTask({ id });
    return task?.status === status ? task : undefined;
  }, `task ${id} to be ${TaskStatus[status]}`);
}

/** A raw Connect JSON call, for bodies the generated client would never send. */
async function postJson(method: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; json: { code?: string; message?: string } }> {
  const res = await fetch(`${api.server.url}/task.v1.TaskService/${method}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
  return { status: res.status, json: (await res.json()) as { code?: string; message?: string } };
}

/** A GET with an explicit Host header (fetch does not allow setting one). */
function getWithHost(url: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on("error", reject);
  });
}

describe("list filters are capped (item 4)", () => {
  it("rejects 70,000 types and 3 million statuses with InvalidArgument, quickly and without touching the database", async () => {
    await expectConnectError(api.client.listTasks({ types: Array.from({ length: 70_000 }, (_, i) => `t${i}`) }), Code.InvalidArgument, /types: must list at most 100/);
    const statuses = new Array<TaskStatus>(3_000_000).fill(TaskStatus.FAILED);
    await expectConnectError(api.grpc.listTasks({ statuses }), Code.InvalidArgument, /statuses: must list at most 100/);
    expect(await fetch(`${api.server.url}/healthz`).then((r) => r.status)).toBe(200);
  });
});

describe("JSON requests are strict (item 13)", () => {
  it("rejects an unknown status name instead of dropping it and listing every task", async () => {
    const bad = await postJson("ListTasks", JSON.stringify({ statuses: ["FAILED"] }));
    expect(bad).toMatchObject({ status: 400, json: { code: "invalid_argument" } });
    const good = await postJson("ListTasks", JSON.stringify({ statuses: ["TASK_STATUS_FAILED"] }));
    expect(good.status).toBe(200);
  });

  it("rejects an unknown field", async () => {
    expect(await postJson("ListTasks", JSON.stringify({ status: ["TASK_STATUS_FAILED"] }))).toMatchObject({ status: 400, json: { code: "invalid_argument" } });
  });
});

describe("unstorable strings in parameters (item 14)", () => {
  it("answers InvalidArgument for a lone surrogate and writes nothing", async () => {
    const before = await rowCounts(api.database.db.kysely);
    const res = await postJson("CreateTask", '{"name":"s","type":"shell","parameters":{"command":"echo \\ud800"}}');
    expect(res).toMatchObject({ status: 400, json: { code: "invalid_argument", message: expect.stringContaining("parameters.command") } });
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
  });
});

describe("request bodies that are not protobuf (item 14)", () => {
  const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]); // field 1, a length past the end

  it("Connect protocol: 400 invalid_argument, not 500 internal", async () => {
    const res = await fetch(`${api.server.url}/task.v1.TaskService/ListTasks`, { method: "POST", headers: { "content-type": "application/proto" }, body: garbage });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: "invalid_argument", message: expect.stringContaining("parse binary") });
  });

  it("gRPC: status 3 (INVALID_ARGUMENT), not 13 (INTERNAL)", async () => {
    const session = http2.connect(api.server.url);
    try {
      const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, garbage.length]), garbage]);
      const req = session.request({ ":method": "POST", ":path": "/task.v1.TaskService/ListTasks", "content-type": "application/grpc", te: "trailers" });
      const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => req.once("trailers", resolve));
      const headers = new Promise<http2.IncomingHttpHeaders>((resolve) => req.once("response", resolve));
      req.end(frame);
      req.resume();
      const status = (await Promise.race([trailers, headers.then((h) => (h["grpc-status"] ? h : trailers))]))["grpc-status"];
      expect(status).toBe("3");
    } finally {
      session.close();
    }
  });
});

describe("request bodies that are not protobuf, over gRPC-Web (item 14)", () => {
  it("gRPC-Web: status 3 in the trailer frame", async () => {
    const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, garbage.length]), garbage]);
    const res = await fetch(`${api.server.url}/task.v1.TaskService/ListTasks`, { method: "POST", headers: { "content-type": "application/grpc-web+proto" }, body: frame });
    const body = Buffer.from(await res.arrayBuffer());
    const status = res.headers.get("grpc-status") ?? /grpc-status: ?(\d+)/.exec(body.toString("latin1"))?.[1];
    expect(status).toBe("3");
  });
});

describe("results PostgreSQL cannot store as they are (item 12)", () => {
  it("a NUL or lone surrogate in a result is replaced and the task succeeds", async () => {
    const { task } = await api.client.createTask({ name: "nul", type: "run_query", parameters: { sql: `select '"a\\u0000b"'::json as v, '"\\ud800"'::json as w` } });
    const done = await waitForStatus(task!.id, TaskStatus.SUCCEEDED);
    expect(done.result).toMatchObject({ rows: [{ v: "a\uFFFDb", w: "\uFFFD" }] });
  });

  it("a NUL in shell output is stored as ␀ (U+2400)", async () => {
    const { task } = await api.client.createTask({ name: "nul-out", type: "shell", parameters: { command: "printf 'a\\0b\\n'" } });
    await waitForStatus(task!.id, TaskStatus.SUCCEEDED);
    const { lines } = await api.client.getTaskLogs({ id: task!.id });
    expect(lines.map((l) => l.line)).toEqual(["a\u2400b"]);
  });
});

describe("an outcome the database refuses (item 12)", () => {
  it("fails the attempt with the real reason instead of leaving it RUNNING", async () => {
    const db = api.database.db;
    const { task } = await api.client.createTask({ name: "refused", type: "noop", runAt: { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600), nanos: 0 } });
    const id = task!.id.toString();
    expect(await claimAttempt(db, id, 1, "test-worker")).toBeDefined();
    // Unsanitised on purpose: jsonb cannot hold U+0000.
    const refused: AttemptOutcome = { kind: "succeeded", result: { v: "a\u0000b" }, details: "attempt 1 succeeded" };
    const { outcome } = await recordOrFailWithReason((o) => recordOutcome(db, id, 1, "test-worker", o), refused, 1, api.database.logger);
    expect(outcome).toMatchObject({ kind: "failed", error: "could not record the attempt's outcome: unsupported Unicode escape sequence" });
    const { task: after } = await api.client.getTask({ id: task!.id });
    expect(after).toMatchObject({ status: TaskStatus.FAILED, lastError: expect.stringContaining("could not record") });
  });
});

describe("large payloads stay out of lists (item 1)", () => {
  it("ListTasks replaces parameters and results over 16 KiB by a note; GetTask returns them whole", async () => {
    const { task: bigParams } = await api.client.createTask({ name: "p", type: "noop", parameters: { fail: "x".repeat(20_000) } });
    const { task: bigResult } = await api.client.createTask({ name: "r", type: "run_query", parameters: { sql: "select repeat('y', 100000) as y" } });
    await waitForStatus(bigResult!.id, TaskStatus.SUCCEEDED);
    const { tasks } = await api.client.listTasks({ ids: [bigParams!.id, bigResult!.id] });
    const byId = new Map(tasks.map((t) => [t.id, t]));
    expect(byId.get(bigParams!.id)!.parameters).toMatchObject({ omitted: expect.stringContaining("GetTask"), bytes: expect.any(Number) });
    expect(byId.get(bigResult!.id)!.result).toMatchObject({ omitted: expect.stringContaining("GetTask") });
    const { task: whole } = await api.client.getTask({ id: bigResult!.id });
    expect((whole!.result as { rows: { y: string }[] }).rows[0]!.y).toHaveLength(100_000);
  });

  it("a wide run_query result is cut to the result cap and says so", async () => {
    const { task } = await api.client.createTask({ name: "wide", type: "run_query", parameters: { sql: "select repeat('z', 300000) as z from generate_series(1, 10)", max_rows: 10 } });
    const done = await waitForStatus(task!.id, TaskStatus.SUCCEEDED);
    const result = done.result as { rows: unknown[]; truncated: boolean; row_count: number };
    expect(result).toMatchObject({ truncated: true, row_count: 10 });
    expect(result.rows.length).toBe(3); // 3 x 300 KB fit in 1 MB, the fourth does not
  });
});

describe("RetryTask on a server where the type is disabled (item 11)", () => {
  it("is refused with FailedPrecondition and changes nothing", async () => {
    const config = loadConfig({ host: "127.0.0.1", port: 0, enableShell: false }, {});
    const plugins = builtinPlugins(config, api.database.logger);
    const noShell: ApiServer = await startApiServer({ db: api.database.db, registry: plugins.registry, config, logger: api.database.logger });
    try {
      const { task } = await api.client.createTask({ name: "later", type: "shell", parameters: { command: "true" }, runAt: { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600), nanos: 0 } });
      await api.client.cancelTask({ id: task!.id });
      const client = createClient(TaskService, createGrpcTransport({ baseUrl: noShell.url }));
      await expectConnectError(client.retryTask({ id: task!.id }), Code.FailedPrecondition, /disabled/);
      expect((await api.client.getTask({ id: task!.id })).task!.status).toBe(TaskStatus.CANCELLED);
    } finally {
      await noShell.close();
      await plugins.close();
    }
  });
});

describe("DNS rebinding (item 10)", () => {
  it("a tokenless loopback server answers loopback host names only", async () => {
    const url = `${api.server.url}/healthz`;
    const port = new URL(api.server.url).port;
    expect(await getWithHost(url, "evil.example")).toBe(403);
    expect(await getWithHost(url, `evil.example:${port}`)).toBe(403);
    expect(await getWithHost(url, `localhost:${port}`)).toBe(200);
    expect(await getWithHost(url, `127.0.0.1:${port}`)).toBe(200);
    expect(await getWithHost(url, `[::1]:${port}`)).toBe(200);
  });

  it("with tokens, or an explicit allow-list, other names are served", async () => {
    const withTokens = await startTestApi({ config: { apiTokens: ["t0ken"] } });
    const listed = await startTestApi({ config: { allowedHosts: ["tasks.internal"] } });
    try {
      expect(await getWithHost(`${withTokens.server.url}/healthz`, "tasks.example.com")).toBe(200);
      expect(await getWithHost(`${listed.server.url}/healthz`, "tasks.internal:80")).toBe(200);
      expect(await getWithHost(`${listed.server.url}/healthz`, "localhost")).toBe(403);
    } finally {
      await withTokens.close();
      await listed.close();
    }
  });
});

describe("unauthenticated health and metrics cost little (item 5)", () => {
  it("all Watch streams share one poll, and Watch streams past the cap get ResourceExhausted", async () => {
    const capped = await startTestApi({ config: { maxHealthWatchers: 60 } });
    const controller = new AbortController();
    let acquired = 0;
    capped.database.db.pool.on("acquire", () => acquired++);
    try {
      const health = createClient(Health, createGrpcTransport({ baseUrl: capped.server.url }));
      const streams = Array.from({ length: 60 }, () => health.watch({ service: "" }, { signal: controller.signal })[Symbol.asyncIterator]());
      for (const s of streams) expect((await s.next()).value?.status).toBeDefined();
      const extra = health.watch({ service: "" })[Symbol.asyncIterator]();
      await expect(extra.next()).rejects.toMatchObject({ code: Code.ResourceExhausted });
      // 60 watchers over one 5-second poll interval: one query per poll, not one per watcher (60 or more).
      // The server's own background work (the counts fold every 2 s) takes connections too, more often on
      // a loaded machine, so the bound leaves room for it and still fails at one query per watcher.
      await new Promise((resolve) => setTimeout(resolve, 6_000));
      expect(acquired).toBeLessThan(20);
    } finally {
      controller.abort();
      await capped.close();
    }
  });

  it("a burst of /metrics scrapes counts tasks once", async () => {
    // Counts the statements that read the task counts (the server's own background work, such as
    // folding the counts every 2 s, writes them and is not counted): one per cache period at most.
    // A server of its own, so the burst starts with its 5 s count cache cold whatever ran before.
    const fresh = await startTestApi({ metrics: new Metrics() });
    let reads = 0;
    const query = pg.Client.prototype.query;
    pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
      const first = args[0] as string | { text?: string } | undefined;
      const text = typeof first === "string" ? first : (first?.text ?? "");
      if (/from task_counts/.test(text) && !/insert into task_counts/.test(text)) reads++;
      return (query as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof query;
    try {
      for (let i = 0; i < 20; i++) expect((await fetch(`${fresh.server.url}/metrics`)).status).toBe(200);
    } finally {
      pg.Client.prototype.query = query;
      await fresh.close();
    }
    expect(reads).toBeGreaterThanOrEqual(1);
    expect(reads).toBeLessThanOrEqual(2);
  });
});

describe("the create-time check of shell commands is bounded (issue 29)", () => {
  /** 60 KB that bash -n takes tens of milliseconds to parse (nested command substitutions in quotes). */
  const slowToParse = `echo "$(${'echo "$(:)";'.repeat(5_000)})"`;

  it("an oversized command is refused before any process starts", async () => {
    const started = Date.now();
    await expectConnectError(
      api.client.createTask({ name: "big", type: "shell", parameters: { command: "#".repeat(70_000) } }),
      Code.InvalidArgument,
      /parameters\.command: .*65536/,
    );
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it("a command that keeps bash -n busy past the timeout is cut off and refused; past the concurrency cap, ResourceExhausted", async () => {
    expect(slowToParse.length).toBeLessThanOrEqual(65_536);
    // The default server parses it (a valid command is never blocked by default).
    expect((await api.client.createTask({ name: "slow", type: "shell", parameters: { command: slowToParse } })).created).toBe(true);
    const bounded = await startTestApi({ config: { shellCheckTimeoutMs: 5, shellCheckConcurrency: 1, shellCheckWaitMs: 0 } });
    try {
      const before = await rowCounts(bounded.database.db.kysely);
      await expectConnectError(
        bounded.client.createTask({ name: "slow", type: "shell", parameters: { command: slowToParse } }),
        Code.InvalidArgument,
        /parameters\.command: could not be parsed within 5 ms/,
      );
      // Twenty at once against one slot and no wait: the rest are turned away at once, not queued.
      const outcomes = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) => bounded.client.createTask({ name: "slow", type: "shell", parameters: { command: `${slowToParse} # ${i}` } })),
      );
      const codes = outcomes.map((o) => (o.status === "rejected" ? Code[(o.reason as { code: Code }).code] : "created"));
      expect(codes).not.toContain("created");
      expect(codes).toContain("ResourceExhausted");
      expect(codes.filter((c) => c !== "ResourceExhausted" && c !== "InvalidArgument")).toEqual([]);
      expect(await rowCounts(bounded.database.db.kysely)).toEqual(before);
    } finally {
      await bounded.close();
    }
  });
});

describe("small ones (item 15)", () => {
  it("a send_email sender outside the allow-list is rejected when the task is created", async () => {
    await expectConnectError(
      api.client.createTask({ name: "spoof", type: "send_email", parameters: { to: "a@example.com", subject: "s", body: "b", from: "ceo@bank.example" } }),
      Code.InvalidArgument,
      /from: is not an allowed sender/,
    );
    await api.client.createTask({ name: "ok", type: "send_email", parameters: { to: "a@example.com", subject: "s", body: "b", from: "news@example.com" } });
  });

  it("the embedded PostgreSQL authenticates TCP connections with SCRAM", async () => {
    const client = new pg.Client({ connectionString: inject("pgAdminUrl") });
    await client.connect();
    try {
      const { rows } = await client.query<{ auth_method: string }>("select distinct auth_method from pg_hba_file_rules where type like 'host%'");
      expect(rows.map((r) => r.auth_method)).toEqual(["scram-sha-256"]);
    } finally {
      await client.end();
    }
  });

  it("tokens of another length are refused like wrong ones", async () => {
    const secured = await startTestApi({ config: { apiTokens: ["a-long-enough-token"] } });
    try {
      for (const token of ["x", "a-long-enough-token-and-more", "a-long-enough-tokeN"]) {
        const res = await fetch(`${secured.server.url}/task.v1.TaskService/ListTasks`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${token}` }, body: "{}" });
        expect(res.status).toBe(401);
      }
      const ok = await fetch(`${secured.server.url}/task.v1.TaskService/ListTasks`, { method: "POST", headers: { "content-type": "application/json", authorization: "Bearer a-long-enough-token" }, body: "{}" });
      expect(ok.status).toBe(200);
    } finally {
      await secured.close();
    }
  });
});

