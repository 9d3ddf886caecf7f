// The example end to end: a `task-cli server` process (which has no copy of http_request's code),
// a worker started with the SDK in this process, a local HTTP server playing the webhook receiver,
// and tasks created with the typed client. Runs in the repository's `npm test` (vitest.config.ts).
import { rm } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createTaskClient, startWorker, TaskStatus, type TaskClient, type Worker } from "task-service";
import { createTestDatabase, type TestDatabase } from "../../../test/helpers/database.js";
import { startServerProcess, type ServerProcess } from "../../../test/helpers/server-process.js";
import { waitFor } from "../../../test/helpers/wait.js";
import { httpRequest } from "../src/plugin.js";

/** What the receiver saw: one entry per request. */
interface Seen {
  path: string;
  method: string;
  attempt: string | undefined;
  idempotencyKey: string | undefined;
  body: string;
  closedEarly: boolean;
}

let database: TestDatabase;
let server: ServerProcess;
let client: TaskClient;
let worker: Worker;
let receiver: http.Server;
let base: string;
const spoolDir = () => path.join(os.tmpdir(), `http-request-example-${database.name}`);
const seen: Seen[] = [];
const calls = new Map<string, number>();

beforeAll(async () => {
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const path = req.url ?? "/";
      const n = (calls.get(path) ?? 0) + 1;
      calls.set(path, n);
      const entry: Seen = { path, method: req.method ?? "", attempt: req.headers["x-task-attempt"] as string | undefined, idempotencyKey: req.headers["idempotency-key"] as string | undefined, body: Buffer.concat(chunks).toString(), closedEarly: false };
      seen.push(entry);
      res.on("close", () => (entry.closedEarly = !res.writableFinished));
      if (path.startsWith("/ok")) return void res.writeHead(200, { "content-type": "application/json" }).end('{"received":true}');
      // The first call is refused as overloaded, the second accepted.
      if (path.startsWith("/flaky")) return void (n === 1 ? res.writeHead(503).end("try later") : res.writeHead(202).end("accepted"));
      if (path.startsWith("/bad")) return void res.writeHead(400).end("missing field customer_id");
      if (path.startsWith("/slow")) return void setTimeout(() => res.writeHead(200).end("late"), 5_000).unref();
      if (path.startsWith("/hang")) return; // answers never: the test cancels the task
      res.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  database = await createTestDatabase();
  server = await startServerProcess(database.url);
  client = createTaskClient({ address: server.url });
  worker = await startWorker({
    databaseUrl: database.url,
    plugins: [httpRequest],
    concurrency: 4,
    logLevel: "silent",
    env: {},
    spoolDir: spoolDir(),
    config: { backoffBaseMs: 50, backoffMaxMs: 200, pollIntervalMs: 100, heartbeatIntervalMs: 200, shutdownGraceMs: 1_000 },
  });
});

afterAll(async () => {
  await worker?.stop();
  await server?.stop();
  if (database) await rm(spoolDir(), { recursive: true, force: true });
  await database?.drop();
  receiver.closeAllConnections();
  await new Promise((resolve) => receiver.close(resolve));
});

describe("http_request, a custom task type from another package", () => {
  it("is registered by the worker and listed as served by it", async () => {
    const { types } = await client.listTaskTypes({});
    const type = types.find((t) => t.name === "http_request");
    expect(type).toMatchObject({ served: true, workers: [worker.workerId], enabled: true, defaultMaxAttempts: 5 });
    expect(type!.parameterSchema).toMatchObject({ type: "object", required: ["url"] });
  });

  it("delivers a webhook: POST with body, headers and the task's idempotency key", async () => {
    const task = await client.submit(httpRequest, { url: `${base}/ok`, headers: { "content-type": "application/json" }, body: '{"order":42}' });
    const done = await client.waitFor(task.id);
    expect(done.status).toBe(TaskStatus.SUCCEEDED);
    expect(done.attempts).toBe(1);
    expect(done.result).toMatchObject({ status: 200, body: '{"received":true}', content_type: "application/json" });
    const request = seen.find((s) => s.path === "/ok")!;
    expect(request).toMatchObject({ method: "POST", body: '{"order":42}', attempt: "1", idempotencyKey: `task-${task.id}` });
  });

  it("retries a 503 with backoff, sending the same idempotency key again", async () => {
    const task = await client.submit(httpRequest, { url: `${base}/flaky` });
    const done = await client.waitFor(task.id);
    expect(done.status).toBe(TaskStatus.SUCCEEDED);
    expect(done.attempts).toBe(2);
    expect(done.result).toMatchObject({ status: 202 });
    const requests = seen.filter((s) => s.path === "/flaky");
    expect(requests.map((r) => r.attempt)).toEqual(["1", "2"]);
    expect(new Set(requests.map((r) => r.idempotencyKey))).toEqual(new Set([`task-${task.id}`]));
    const { history } = await client.getTaskHistory({ id: task.id });
    expect(history.map((h) => h.details).join("\n")).toMatch(/attempt 1 failed: unexpected status 503: try later; retrying/);
  });

  it("fails a 400 at once (PermanentTaskError), without spending the other attempts", async () => {
    const task = await client.submit(httpRequest, { url: `${base}/bad`, method: "PUT" });
    const done = await client.waitFor(task.id);
    expect(done.status).toBe(TaskStatus.FAILED);
    expect(done.attempts).toBe(1);
    expect(done.lastError).toBe("unexpected status 400: missing field customer_id");
    expect(calls.get("/bad")).toBe(1);
  });

  it("times out a slow endpoint after timeout_ms and fails when the attempts are spent", async () => {
    const task = await client.submit(httpRequest, { url: `${base}/slow`, method: "GET", timeout_ms: 300 }, { maxAttempts: 2 });
    const done = await client.waitFor(task.id);
    expect(done.status).toBe(TaskStatus.FAILED);
    expect(done.attempts).toBe(2);
    expect(done.lastError).toBe("request timed out after 300 ms");
  });

  it("cancels a request in flight: the connection is closed and the task is CANCELLED", async () => {
    const task = await client.submit(httpRequest, { url: `${base}/hang` });
    await waitFor(() => seen.some((s) => s.path === "/hang"), "the request to arrive");
    await client.cancelTask({ id: task.id, reason: "no longer needed" });
    const done = await client.waitFor(task.id);
    expect(done.status).toBe(TaskStatus.CANCELLED);
    await waitFor(() => seen.find((s) => s.path === "/hang")!.closedEarly, "the request's connection to close");
  });

  it("types submit's parameters by the plugin's schema", () => {
    // Compile-time checks (npm run lint type-checks the example): these lines must not compile.
    const typed = (run: boolean) => {
      if (!run) return;
      // @ts-expect-error: "uri" is not a parameter of http_request
      void client.submit(httpRequest, { uri: "http://x" });
      // @ts-expect-error: method is one of the listed verbs
      void client.submit(httpRequest, { url: "http://x", method: "FETCH" });
    };
    expect(() => typed(false)).not.toThrow();
  });

  it("rejects invalid parameters at create with field errors, writing nothing", async () => {
    const before = (await client.listTasks({ types: ["http_request"] })).totalCount;
    const err = await client
      .createTask({ name: "bad", type: "http_request", parameters: { method: "FETCH", headers: { "x-a": 1 } } })
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    const message = (err as ConnectError).rawMessage;
    expect(message).toMatch(/parameters\.url: is required/);
    expect(message).toMatch(/parameters\.method: must be one of "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"/);
    expect(message).toMatch(/parameters\.headers\.x-a: must be string/);
    expect((await client.listTasks({ types: ["http_request"] })).totalCount).toBe(before);
  });

  it("still accepts tasks when no worker serves the type: they wait, and the type shows unserved", async () => {
    await worker.stop();
    const { types } = await client.listTaskTypes({});
    expect(types.find((t) => t.name === "http_request")).toMatchObject({ served: false, workers: [] });
    const task = await client.submit(httpRequest, { url: `${base}/ok?later` });
    expect(task.status).toBe(TaskStatus.QUEUED);
    // A new worker picks it up.
    worker = await startWorker({ databaseUrl: database.url, plugins: [httpRequest], concurrency: 2, logLevel: "silent", env: {}, spoolDir: spoolDir(), config: { pollIntervalMs: 100, heartbeatIntervalMs: 200 } });
    expect((await client.waitFor(task.id)).status).toBe(TaskStatus.SUCCEEDED);
  });
});
