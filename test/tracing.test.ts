// Traces over OTLP/HTTP to a receiver in the test: the chain from CreateTask (with a traceparent
// header) to the worker's `process <queue>` span, its children, and the shell command's TRACEPARENT;
// and, with no OTEL_* settings, no SDK module loaded and nothing exported.
import { execFile } from "node:child_process";
import { readFile, writeFile, mkdtemp } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as incubating from "@opentelemetry/semantic-conventions/incubating";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { TaskService } from "../src/gen/task/v1/task_pb.js";
import { createLogger } from "../src/logger.js";
import { runQueryPlugin } from "../src/plugins/run-query.js";
import { startServices } from "../src/services.js";
import * as tracing from "../src/tracing.js";
import { createTestDatabase, PLAYGROUND_DATABASE, urlForDatabase, type TestDatabase } from "./helpers/database.js";
import { pluginContext } from "./helpers/plugin-context.js";
import { waitFor } from "./helpers/wait.js";
import { fastWorkerConfig } from "./helpers/workers.js";

const root = path.resolve(import.meta.dirname, "..");

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  links?: { traceId: string; spanId: string }[];
  attributes?: { key: string; value: { stringValue?: string; intValue?: string | number } }[];
}

/** An OTLP/HTTP (JSON) receiver on 127.0.0.1: every span posted to /v1/traces. */
async function startReceiver(): Promise<{ url: string; spans: OtlpSpan[]; posts: number; close(): Promise<void> }> {
  const received = { spans: [] as OtlpSpan[], posts: 0 };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.posts++;
      if (req.url === "/v1/traces" && String(req.headers["content-type"]).startsWith("application/json")) {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] };
        for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans) received.spans.push(...ss.spans);
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    spans: received.spans,
    get posts() {
      return received.posts;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

const attr = (span: OtlpSpan, key: string) => {
  const v = span.attributes?.find((a) => a.key === key)?.value;
  return v?.stringValue ?? (v?.intValue !== undefined ? String(v.intValue) : undefined);
};

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.drop();
});

describe("the messaging attributes", () => {
  it("are the semantic conventions' names", () => {
    expect(tracing.ATTR_MESSAGING_SYSTEM).toBe(incubating.ATTR_MESSAGING_SYSTEM);
    expect(tracing.ATTR_MESSAGING_OPERATION_TYPE).toBe(incubating.ATTR_MESSAGING_OPERATION_TYPE);
    expect(tracing.ATTR_MESSAGING_DESTINATION_NAME).toBe(incubating.ATTR_MESSAGING_DESTINATION_NAME);
    expect(tracing.ATTR_MESSAGING_MESSAGE_ID).toBe(incubating.ATTR_MESSAGING_MESSAGE_ID);
    expect(tracing.ATTR_MESSAGING_BATCH_MESSAGE_COUNT).toBe(incubating.ATTR_MESSAGING_BATCH_MESSAGE_COUNT);
    expect(incubating.MESSAGING_OPERATION_TYPE_VALUE_PROCESS).toBe("process");
  });
});

describe("traces exported over OTLP/HTTP", () => {
  it("link the create's trace to the attempt's process span, its children and the shell's TRACEPARENT", async () => {
    const receiver = await startReceiver();
    const config = loadConfig(
      {
        ...fastWorkerConfig,
        databaseUrl: database.url,
        host: "127.0.0.1",
        port: 0,
        otelTracesEndpoint: `${receiver.url}/v1/traces`,
        otelProtocol: "http/json",
        otelServiceName: "tracing-test",
      },
      {},
    );
    const services = await startServices(config, database.logger, { api: true, workers: 2, allowEmbedded: false });
    let taskId = 0n;
    const clientTrace = "0af7651916cd43dd8448eb211c80319c";
    try {
      const client = createClient(TaskService, createConnectTransport({ baseUrl: services.server!.url, httpVersion: "1.1" }));
      const { task } = await client.createTask(
        { name: "traced", type: "shell", parameters: { command: 'echo "tp=$TRACEPARENT"' } },
        { headers: { traceparent: `00-${clientTrace}-b7ad6b7169203331-01` } },
      );
      taskId = task!.id;
      await waitFor(async () => (await client.getTask({ id: taskId })).task?.finishedAt !== undefined, "the task to finish");
      // Each schedule tick starts a trace of its own.
      const [a, b] = [tracing.tickTraceparent("nightly", new Date()), tracing.tickTraceparent("nightly", new Date())];
      expect(a).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      expect(tracing.parseTraceparent(a)!.traceId).not.toBe(tracing.parseTraceparent(b)!.traceId);
    } finally {
      // The last stop flushes the buffered spans to the receiver.
      await services.stop();
    }
    // Stopped, the process traces nothing: a tick gets no traceparent.
    expect(tracing.tickTraceparent("nightly", new Date())).toBeNull();
    try {
      const spans = receiver.spans;
      expect(spans.filter((s) => s.name === "schedule nightly")).toHaveLength(2);
      const create = spans.find((s) => s.name === "task.v1.TaskService/CreateTask");
      expect(create, JSON.stringify(spans.map((s) => s.name))).toBeDefined();
      // The create continues the client's trace.
      expect(create!.traceId).toBe(clientTrace);
      expect(create!.parentSpanId).toBe("b7ad6b7169203331");
      const stored = await database.db.kysely.selectFrom("tasks").select("traceparent").where("id", "=", String(taskId)).executeTakeFirstOrThrow();
      expect(stored.traceparent).toBe(`00-${clientTrace}-${create!.spanId}-01`);

      const process = spans.find((s) => s.name === "process default" && attr(s, "messaging.message.id") === String(taskId));
      expect(process).toBeDefined();
      expect(process!.kind).toBe(5); // SPAN_KIND_CONSUMER
      expect(attr(process!, "messaging.operation.type")).toBe("process");
      expect(attr(process!, "messaging.destination.name")).toBe("default");
      expect(attr(process!, "messaging.system")).toBe(tracing.MESSAGING_SYSTEM);
      // A link, not a parent: the attempt is a trace of its own that points at the create.
      expect(process!.traceId).not.toBe(clientTrace);
      expect(process!.links).toContainEqual(expect.objectContaining({ traceId: clientTrace, spanId: create!.spanId }));
      const claim = spans.find((s) => s.name === "claim" && process!.links!.some((l) => l.spanId === s.spanId));
      expect(claim, "the claim span the process span links to").toBeDefined();

      const children = spans.filter((s) => s.parentSpanId === process!.spanId);
      const run = children.find((s) => s.name === "run shell");
      const outcome = children.find((s) => s.name === "record outcome");
      expect(run?.traceId).toBe(process!.traceId);
      expect(outcome?.traceId).toBe(process!.traceId);

      const { rows } = await database.db.kysely
        .selectFrom("task_logs")
        .select("lines")
        .where("task_id", "=", String(taskId))
        .execute()
        .then((r) => ({ rows: r }));
      const line = rows.flatMap((r) => r.lines.split("\n")).find((l) => l.startsWith("tp="));
      const m = /^tp=00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(line ?? "");
      expect(m, `the shell's TRACEPARENT line: ${line}`).not.toBeNull();
      expect(m![1]).toBe(process!.traceId);
      expect(spans.filter((s) => s.traceId === process!.traceId).map((s) => s.spanId)).toContain(m![2]);
      expect(m![2]).toBe(run!.spanId);
    } finally {
      await receiver.close();
    }
  });
});

describe("run_query", () => {
  it("runs the statement with the attempt's traceparent as application_name, and only that statement", async () => {
    const plugin = runQueryPlugin({
      targets: { playground: urlForDatabase(PLAYGROUND_DATABASE) },
      writableTargets: [],
      statementTimeoutMs: 2000,
      poolSize: 1,
      maxResultBytes: 1024 * 1024,
      maxReadBytes: 1024 * 1024,
      logger: createLogger("silent"),
    });
    try {
      const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
      const query = { target: "playground", sql: "select current_setting('application_name') as name" };
      const traced = await plugin.run(plugin.parameters.parse(query), { ...pluginContext(), traceparent });
      expect(traced.rows).toEqual([{ name: traceparent }]);
      // Set local: the next task on the same pooled connection does not inherit it.
      const untraced = await plugin.run(plugin.parameters.parse(query), pluginContext());
      expect(untraced.rows).toEqual([{ name: "task-service run_query" }]);
    } finally {
      await plugin.close();
    }
  });
});

/**
 * Runs a server with workers in a child process with `env` as its whole OTEL_* environment, creates
 * and finishes a shell task, and answers which @opentelemetry modules it loaded (a module resolve hook records them).
 */
async function childRun(env: Record<string, string>): Promise<{ modules: string[]; taskId: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "tracing-"));
  const loaded = path.join(dir, "loaded.txt");
  await writeFile(loaded, "");
  const hooks = `data:text/javascript,${encodeURIComponent(`import { appendFileSync } from "node:fs";
let file; export function initialize(data) { file = data.file; }
export async function resolve(specifier, context, next) { const r = await next(specifier, context); appendFileSync(file, r.url + "\\n"); return r; }`)}`;
  const script = `
import { register } from "node:module";
register(${JSON.stringify(hooks)}, { parentURL: import.meta.url, data: { file: ${JSON.stringify(loaded)} } });
const tsx = await import("tsx/esm/api");
tsx.register();
const { loadConfig } = await import(${JSON.stringify(path.join(root, "src/config.ts"))});
const { startServices } = await import(${JSON.stringify(path.join(root, "src/services.ts"))});
const { createClient } = await import("@connectrpc/connect");
const { createConnectTransport } = await import("@connectrpc/connect-node");
const { TaskService } = await import(${JSON.stringify(path.join(root, "src/gen/task/v1/task_pb.ts"))});
const { createLogger } = await import(${JSON.stringify(path.join(root, "src/logger.ts"))});
const config = loadConfig({ databaseUrl: ${JSON.stringify(database.url)}, host: "127.0.0.1", port: 0, enableShell: true, pollIntervalMs: 100, workerConcurrency: 1 });
const services = await startServices(config, createLogger("silent"), { api: true, workers: 1, allowEmbedded: false });
const client = createClient(TaskService, createConnectTransport({ baseUrl: services.server.url, httpVersion: "1.1" }));
const { task } = await client.createTask({ name: "untraced", type: "shell", parameters: { command: 'echo "tp=$TRACEPARENT"' } }, { headers: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" } });
for (let i = 0; i < 200; i++) {
  if ((await client.getTask({ id: task.id })).task.finishedAt) break;
  await new Promise((r) => setTimeout(r, 100));
}
await services.stop();
console.log(String(task.id));
`;
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("OTEL_")));
  const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], { cwd: root, env: { ...base, ...env }, timeout: 60_000 });
  const modules = (await readFile(loaded, "utf8")).split("\n").filter((u) => u.includes("@opentelemetry/"));
  return { modules, taskId: stdout.trim().split("\n").pop()! };
}

describe("with tracing off", () => {
  it("loads no SDK module and exports nothing; on, the same run loads the SDK and exports", async () => {
    const receiver = await startReceiver();
    try {
      const sdk = (urls: string[]) => urls.filter((u) => /@opentelemetry\/(sdk-|exporter-|resources|otlp-)/.test(u));
      const { modules: off, taskId } = await childRun({});
      // Off, the shell still hands on the create's traceparent, so the command joins the client's trace.
      const logs = await database.db.kysely.selectFrom("task_logs").select("lines").where("task_id", "=", taskId).execute();
      expect(logs.flatMap((r) => r.lines.split("\n"))).toContain("tp=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
      expect(off.some((u) => u.includes("@opentelemetry/api/")), "the API is loaded").toBe(true);
      expect(sdk(off)).toEqual([]);
      // `none` wins over an endpoint.
      const { modules: none } = await childRun({ OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url });
      expect(sdk(none)).toEqual([]);
      expect(receiver.posts).toBe(0);
      // The control: the same run with an endpoint loads the SDK and posts spans.
      const { modules: on } = await childRun({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" });
      expect(sdk(on).length).toBeGreaterThan(0);
      expect(receiver.spans.map((s) => s.name)).toContain("process default");
    } finally {
      await receiver.close();
    }
    // Two child runs, each starting PostgreSQL work and a worker: a loaded machine needs more than the default minute.
  }, 150_000);
});
