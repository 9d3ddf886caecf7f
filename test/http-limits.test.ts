import http2 from "node:http2";
import net from "node:net";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health } from "../src/gen/grpc/health/v1/health_pb.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { settleWithin } from "./helpers/plugin-context.js";

/** Short limits, so a test sees connections closed without waiting long. */
const limits = {
  httpHeadersTimeoutMs: 600,
  httpRequestTimeoutMs: 1_200,
  httpKeepAliveTimeoutMs: 600,
  http2IdleTimeoutMs: 600,
};

let api: TestApi;
let host: string;
let port: number;

beforeAll(async () => {
  api = await startTestApi({ config: limits });
  const url = new URL(api.server.url);
  host = url.hostname;
  port = Number(url.port);
});

afterAll(async () => {
  await api?.close();
});

/** A raw connection and a promise of what it received until the server closed it. */
async function rawConnection(): Promise<{ socket: net.Socket; closed: Promise<string> }> {
  const socket = net.connect(port, host);
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  let received = "";
  socket.on("data", (d: Buffer) => (received += d.toString("latin1")));
  const closed = new Promise<string>((resolve) => {
    socket.once("close", () => resolve(received));
    socket.on("error", () => undefined);
  });
  return { socket, closed };
}

/** Waits for the server to close a connection; fails if it is still open after `ms`. */
async function closedWithin(closed: Promise<string>, ms = 15_000): Promise<string> {
  const outcome = await settleWithin(closed, ms);
  if (outcome.state !== "fulfilled") throw new Error(`connection still open after ${ms} ms`);
  return outcome.value;
}

describe("connections are closed when a client stalls", () => {
  it("a connection that sends nothing", async () => {
    const { closed } = await rawConnection();
    expect(await closedWithin(closed)).toBe("");
  });

  it("headers that never finish", async () => {
    const { socket, closed } = await rawConnection();
    socket.write("POST /task.v1.TaskService/ListTasks HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    expect(await closedWithin(closed)).toMatch(/^HTTP\/1\.1 408/);
  });

  it("a body that never finishes", async () => {
    const { socket, closed } = await rawConnection();
    socket.write(`POST /task.v1.TaskService/ListTasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"page`);
    // Keep trickling bytes so only the whole-request limit can end it.
    const trickle = setInterval(() => socket.write(" "), 200);
    try {
      await closedWithin(closed);
    } finally {
      clearInterval(trickle);
    }
  });

  it("an idle keep-alive connection after a response", async () => {
    const { socket, closed } = await rawConnection();
    socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    // Node's own default would keep it for 5 s; the configured 0.6 s applies.
    expect(await closedWithin(closed, 4_000)).toMatch(/^HTTP\/1\.1 200/);
  });

  it("an HTTP/2 preface and nothing more", async () => {
    const { socket, closed } = await rawConnection();
    socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    await closedWithin(closed);
  });

  it("an HTTP/2 connection left idle after its request", async () => {
    const session = http2.connect(api.server.url);
    const closed = new Promise<void>((resolve) => session.once("close", () => resolve()));
    session.on("error", () => undefined);
    const req = session.request({ ":path": "/healthz" });
    req.resume();
    await new Promise((resolve) => req.once("end", resolve));
    expect((await settleWithin(closed, 15_000)).state).toBe("fulfilled");
  });
});

describe("streams outlive the timeouts", () => {
  it("a quiet health Watch stream stays open past the idle and request timeouts", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: api.server.url }));
    const controller = new AbortController();
    const stream = health.watch({ service: "" }, { signal: controller.signal });
    const iterator = stream[Symbol.asyncIterator]();
    expect((await iterator.next()).done).toBe(false); // the first status
    // Nothing changes, so nothing is sent: the stream must still be open well past every limit.
    const next = iterator.next();
    expect((await settleWithin(next, 3_000)).state).toBe("pending");
    controller.abort();
    await next.catch(() => undefined);
  });
});

describe("connection cap", () => {
  it("closes connections past the cap at once and serves again when one closes", async () => {
    const capped = await startTestApi({ config: { httpMaxConnections: 3, httpHeadersTimeoutMs: 30_000, httpRequestTimeoutMs: 30_000 } });
    const url = new URL(capped.server.url);
    const open: net.Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const s = net.connect(Number(url.port), url.hostname);
        await new Promise((resolve) => s.once("connect", resolve));
        open.push(s);
      }
      // Let the server accept all three before the fourth arrives.
      await new Promise((resolve) => setTimeout(resolve, 200));
      const extra = net.connect(Number(url.port), url.hostname);
      extra.on("error", () => undefined);
      expect((await settleWithin(new Promise((resolve) => extra.once("close", resolve)), 10_000)).state).toBe("fulfilled");

      open.pop()!.destroy();
      await new Promise((resolve) => setTimeout(resolve, 200));
      const res = await fetch(`${capped.server.url}/healthz`);
      expect(res.status).toBe(200);
    } finally {
      for (const s of open) s.destroy();
      await capped.close();
    }
  });
});
