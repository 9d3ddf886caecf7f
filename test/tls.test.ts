import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { startApiServer } from "../src/api/server.js";
import { TaskService, TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { Metrics } from "../src/metrics.js";
import { builtinPlugins } from "../src/plugins/builtin.js";
import { Readable } from "node:stream";
import { createTaskClient, z } from "../src/sdk/index.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";
import { taskRequest } from "./helpers/factory.js";
import { spawnCli, type CliProcess } from "./helpers/process.js";
import { waitFor } from "./helpers/wait.js";

// TLS on the API (issue 26 item 5): a CA and a server certificate for 127.0.0.1 made with openssl
// here, a real server on port 0 serving HTTPS, and clients that trust the CA (or do not).

const dir = mkdtempSync(path.join(os.tmpdir(), "task-tls-"));
const file = (name: string) => path.join(dir, name);
let api: TestApi;
let ca: Buffer;
const agents: CliProcess[] = [];

function openssl(...args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
}

/** A CA, and a certificate it signs for 127.0.0.1 (P-256 keys: fast to make). */
function makeCertificates(): void {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=task-test-ca",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  openssl("req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1");
  writeFileSync(file("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext");
}

beforeAll(async () => {
  makeCertificates();
  ca = readFileSync(file("ca.pem"));
  api = await startTestApi({ config: { tlsCert: file("server.pem"), tlsKey: file("server.key") }, metrics: new Metrics() });
});
afterAll(async () => {
  for (const a of agents) if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill("SIGKILL");
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** GET over HTTPS/1.1, trusting the test CA. */
function httpsGet(url: string): Promise<{ status: number; body: string; protocol: string }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca }, (res) => {
        let body = "";
        res.on("data", (c) => (body += String(c)));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, protocol: `HTTP/${res.httpVersion}` }));
      })
      .on("error", reject);
  });
}

describe("the API over TLS", () => {
  it("serves https:// with HTTP/2 by ALPN: Connect and the plain routes", async () => {
    expect(api.server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const session = http2.connect(api.server.url, { ca });
    try {
      await new Promise<void>((resolve, reject) => session.once("connect", () => resolve()).once("error", reject));
      expect(session.alpnProtocol).toBe("h2");
      const status = await new Promise<number>((resolve, reject) => {
        const req = session.request({ ":path": "/healthz" });
        req.once("response", (h) => resolve(Number(h[":status"]))).once("error", reject);
        req.resume();
        req.end();
      });
      expect(status).toBe(200);
    } finally {
      session.close();
    }
    const client = createClient(TaskService, createConnectTransport({ baseUrl: api.server.url, httpVersion: "2", nodeOptions: { ca } }));
    const { task } = await client.createTask(taskRequest({ name: "over-h2" }));
    expect((await client.getTask({ id: task!.id })).task?.name).toBe("over-h2");
  });

  it("serves HTTP/1.1 over TLS on the same port: health, readiness, metrics, the dashboard", async () => {
    for (const [route, expected] of [["/healthz", "ok"], ["/readyz", "ready"], ["/metrics", "task_"], ["/", "<html"]] as const) {
      const res = await httpsGet(`${api.server.url}${route}`);
      expect(res.protocol).toBe("HTTP/1.1");
      expect(res.status, route).toBe(200);
      expect(res.body.toLowerCase(), route).toContain(expected.toLowerCase());
    }
  });

  it("serves gRPC (HTTP/2) and gRPC-Web (HTTP/1.1) over TLS", async () => {
    const grpc = createClient(TaskService, createGrpcTransport({ baseUrl: api.server.url, nodeOptions: { ca } }));
    const { task } = await grpc.createTask(taskRequest({ name: "over-grpc" }));
    expect((await grpc.getTask({ id: task!.id })).task?.status).toBe(TaskStatus.QUEUED);
    const web = createClient(TaskService, createGrpcWebTransport({ baseUrl: api.server.url, httpVersion: "1.1", nodeOptions: { ca } }));
    expect((await web.getTask({ id: task!.id })).task?.name).toBe("over-grpc");
  });
});

describe("the SDK over TLS", () => {
  it("createTaskClient with ca (a path, or the PEM text) calls the API and uploads a file", async () => {
    for (const trust of [file("ca.pem"), ca.toString()]) {
      const client = createTaskClient({ address: api.server.url, ca: trust });
      const upload = await client.upload("in.txt", Readable.from([Buffer.from("hello over tls")]));
      expect(upload.size).toBe(14);
      const task = await client.submit({ name: "noop", parameters: z.object({}) }, {}, { name: "from-sdk", files: { "in.txt": upload } });
      expect((await client.getTask({ id: task.id })).task?.name).toBe("from-sdk");
    }
    await expect(createTaskClient({ address: api.server.url }).getTask({ id: 1n })).rejects.toThrow(/certificate/);
  });
});

describe("task-cli over TLS", () => {
  it("creates and gets a task with --ca", async () => {
    const created = await runCli(["--address", api.server.url, "--ca", file("ca.pem"), "task", "create", "from-cli", "--type", "noop", "-o", "json"]);
    expect(created.stderr).toBe("");
    expect(created.code).toBe(0);
    const id = JSON.parse(created.stdout).task.id as string;
    const got = await runCli(["--address", api.server.url, "--ca", file("ca.pem"), "task", "get", "--id", id, "-o", "json"]);
    expect(got.code).toBe(0);
    expect(JSON.parse(got.stdout).task).toMatchObject({ id, name: "from-cli" });
  });

  it("fails without --ca with a certificate error and says how to fix it", async () => {
    const res = await runCli(["--address", api.server.url, "task", "list"]);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/certificate/i);
    expect(res.stderr).toContain("--ca FILE (TASK_CA)");
  });

  it("runs a task to SUCCEEDED on a real `task-cli agent --ca` process, over HTTP/1.1 and HTTP/2", async () => {
    for (const args of [[], ["--http2"]]) {
      const name = `tls-agent${args.length ? "-h2" : ""}`;
      const agent = spawnCli(["agent", "--server", api.server.url, "--ca", file("ca.pem"), "--name", name, "-n", "2", ...args], { LOG_LEVEL: "info" });
      agents.push(agent);
      await waitFor(() => agent.output().includes('"msg":"agent registered"'), `the agent to register:\n${agent.output()}`, 60_000);
      // api.client does not trust the test CA: this one does.
      const client = createClient(TaskService, createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1", nodeOptions: { ca } }));
      const { task } = await client.createTask(taskRequest({ type: "noop", name }));
      const done = await waitFor(async () => {
        const t = (await client.getTask({ id: task!.id })).task!;
        return t.status === TaskStatus.SUCCEEDED ? t : undefined;
      }, `task ${task!.id} to succeed on ${name}:\n${agent.output()}`, 30_000);
      expect(done.attempts).toBe(1);
      agent.child.kill("SIGTERM");
      expect(await agent.exited).toBe(0);
    }
  }, 150_000);
});

describe("a bad certificate", () => {
  it("fails `task-cli server` at start, naming the file", async () => {
    const proc = spawnCli(["server", "--port", "0", "--tls-cert", file("missing.pem"), "--tls-key", file("server.key")], { DATABASE_URL: api.database.url });
    expect(await proc.exited).toBe(1);
    expect(proc.output()).toContain(`error: cannot read the TLS certificate ${file("missing.pem")}: ENOENT`);
  }, 60_000);

  it("fails startApiServer when the key is not the certificate's, or only one of them is given", async () => {
    const base = { host: "127.0.0.1", port: 0 };
    const plugins = builtinPlugins(loadConfig(base, {}), api.database.logger);
    const start = (tls: { tlsCert?: string; tlsKey?: string }) =>
      startApiServer({ db: api.database.db, registry: plugins.registry, config: loadConfig({ ...base, ...tls }, {}), logger: api.database.logger });
    await expect(start({ tlsCert: file("server.pem"), tlsKey: file("ca.key") })).rejects.toThrow(/are not usable.*key values mismatch/);
    await expect(start({ tlsCert: file("server.ext"), tlsKey: file("server.key") })).rejects.toThrow(/are not usable/);
    await expect(start({ tlsCert: file("server.pem") })).rejects.toThrow(/--tls-cert and --tls-key/);
    await plugins.close();
  });
});
