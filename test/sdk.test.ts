// The plugin SDK against a real server and database: custom types registered by workers, validated
// by a server without their code, versions during a rolling deploy, and plugins that misbehave.
import { rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ScheduleService } from "../src/gen/task/v1/schedule_pb.js";
import { definePlugin, PermanentTaskError, startWorker, TaskStatus, z, type StartWorkerOptions, type Worker } from "../src/sdk/index.js";
import { createTaskClient, type TaskClient } from "../src/sdk/client.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";

let api: TestApi;
let client: TaskClient;
const running: Worker[] = [];
const spoolDir = () => path.join(os.tmpdir(), `sdk-test-spool-${api.database.name}`);

async function worker(options: Omit<StartWorkerOptions, "databaseUrl">): Promise<Worker> {
  const w = await startWorker({
    databaseUrl: api.database.url,
    logLevel: "silent",
    env: {},
    spoolDir: spoolDir(),
    config: { backoffBaseMs: 20, backoffMaxMs: 50, pollIntervalMs: 100, heartbeatIntervalMs: 200, shutdownGraceMs: 500 },
    ...options,
  });
  running.push(w);
  return w;
}

const errorOf = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => ConnectError.from(e));

beforeAll(async () => {
  api = await startTestApi();
  client = createTaskClient({ address: api.server.url });
});

// Each test stops its workers, so the next one sees only its own in ListTaskTypes.
afterEach(async () => {
  await Promise.all(running.splice(0).map((w) => w.stop()));
});

afterAll(async () => {
  if (api) await rm(spoolDir(), { recursive: true, force: true });
  await api.close();
});

describe("definePlugin", () => {
  const ok = { description: "x", parameters: z.object({}), run: async () => ({}) };
  it("refuses a bad name, a schema JSON Schema cannot express, and defaults out of range", () => {
    expect(() => definePlugin({ ...ok, name: "Bad Name" })).toThrow(/name "Bad Name" must match/);
    expect(() => definePlugin({ ...ok, name: "dates", parameters: z.object({ at: z.date() }) })).toThrow(/cannot be expressed as JSON Schema/);
    expect(() => definePlugin({ ...ok, name: "slow", defaults: { timeoutMs: 0 } })).toThrow(/defaults.timeoutMs/);
    expect(() => definePlugin({ ...ok, name: "many", defaults: { maxAttempts: 101 } })).toThrow(/defaults.maxAttempts/);
    // Queue names cannot hold ':' (job identifiers are run:<queue>:<type>) nor capitals.
    expect(() => definePlugin({ ...ok, name: "colon", defaults: { queue: "a:b" } })).toThrow(/defaults.queue must be a queue name/);
    expect(() => definePlugin({ ...ok, name: "caps", defaults: { queue: "Mail" } })).toThrow(/defaults.queue must be a queue name/);
  });
});

describe("startWorker", () => {
  it("refuses two plugins with one name, and a plugin named like a built-in it also serves, before connecting", async () => {
    const a = definePlugin({ name: "twice", description: "", parameters: z.object({}), run: async () => ({}) });
    await expect(startWorker({ databaseUrl: "postgres://127.0.0.1:1/none", plugins: [a, a] })).rejects.toThrow(/plugin "twice" is registered twice/);
    const noop = definePlugin({ name: "noop", description: "", parameters: z.object({}), run: async () => ({}) });
    await expect(worker({ plugins: [noop], builtins: ["noop"] })).rejects.toThrow(/plugin "noop" is registered twice/);
  });

  it("runs a custom type end to end; the server validates it from the registry alone", async () => {
    const greet = definePlugin({
      name: "greet",
      description: "Says hello",
      parameters: z.object({ who: z.string().min(1), times: z.number().int().min(1).max(5).default(1) }),
      defaults: { maxAttempts: 2, timeoutMs: 5_000, queue: "greetings" },
      async run(params, ctx) {
        for (let i = 0; i < params.times; i++) ctx.output.write("stdout", `hello ${params.who}`);
        return { greeted: params.who, task: ctx.taskId, attempt: ctx.attempt };
      },
    });
    const unknown = await errorOf(client.submit(greet, { who: "x" }));
    expect(unknown?.code).toBe(Code.InvalidArgument);
    expect(unknown?.rawMessage).toMatch(/^type: unknown task type "greet": no worker has registered it/);

    const w = await worker({ plugins: [greet] });
    const task = await client.submit(greet, { who: "ada", times: 2 });
    // Defaults come from the registered type (the queue too: the worker serves its plugins' default
    // queues); the schema's default is applied by the server.
    expect(task).toMatchObject({ maxAttempts: 2, status: TaskStatus.QUEUED, queue: "greetings" });
    // A queue named in the request wins over the type's default.
    const elsewhere = await client.createTask({ name: "elsewhere", type: "greet", parameters: { who: "bo" }, queue: "default" });
    expect(elsewhere.task?.queue).toBe("default");
    expect(task.parameters).toEqual({ who: "ada", times: 2 });
    const done = await client.waitFor(task.id);
    expect(done.status).toBe(TaskStatus.SUCCEEDED);
    expect((await client.waitFor(elsewhere.task!.id)).status).toBe(TaskStatus.SUCCEEDED);
    expect(done.result).toEqual({ greeted: "ada", task: String(task.id), attempt: 1 });
    const logs = await client.getTaskLogs({ id: task.id });
    expect(logs.lines.map((l) => l.line)).toEqual(["hello ada", "hello ada"]);

    const bad = await errorOf(client.createTasks({ tasks: [{ name: "a", type: "greet", parameters: { who: "b" } }, { name: "b", type: "greet", parameters: { times: 9, extra: 1 } }] }));
    expect(bad?.code).toBe(Code.InvalidArgument);
    expect(bad?.rawMessage).toBe("tasks[1].parameters.who: is required; tasks[1].parameters.times: must be <= 5");

    const schedules = createClient(ScheduleService, createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1" }));
    const sched = await errorOf(schedules.createSchedule({ spec: { name: "nightly-greet", cron: "0 3 * * *", timeZone: "UTC", task: { type: "greet", parameters: { who: 7 } } } }));
    expect(sched?.code).toBe(Code.InvalidArgument);
    expect(sched?.rawMessage).toMatch(/task\.parameters\.who: must be string/);

    const { types } = await client.listTaskTypes({});
    const listed = types.find((t) => t.name === "greet")!;
    expect(listed).toMatchObject({ description: "Says hello", served: true, workers: [w.workerId], defaultQueue: "greetings", defaultMaxAttempts: 2 });
    expect(listed.versions).toHaveLength(1);
    // Built-ins are registered by the server itself (it has no worker): listed, unserved, validated.
    expect(types.find((t) => t.name === "noop")).toMatchObject({ served: false, enabled: true });
  });

  it("keeps a version per schema during a rolling deploy: the newest one a live worker serves is validated against", async () => {
    const v1 = definePlugin({ name: "resize", description: "v1", parameters: z.strictObject({ width: z.number().int() }), run: async (p) => ({ v: 1, ...p }) });
    const v2 = definePlugin({ name: "resize", description: "v2", parameters: z.strictObject({ width: z.number().int(), height: z.number().int().optional() }), run: async (p) => ({ v: 2, ...p }) });
    const old = await worker({ plugins: [v1] });
    const rejected = await errorOf(client.submit(v2, { width: 1, height: 2 }));
    expect(rejected?.rawMessage).toBe("parameters.height: is not a known parameter");

    const next = await worker({ plugins: [v2] });
    const accepted = await client.submit(v2, { width: 1, height: 2 });
    expect(accepted.status).toBe(TaskStatus.QUEUED);
    let { types } = await client.listTaskTypes({});
    let resize = types.find((t) => t.name === "resize")!;
    expect(resize.versions.map((v) => [v.current, v.workers])).toEqual([[true, [next.workerId]], [false, [old.workerId]]]);
    expect(resize.description).toBe("v2");

    // An old worker restarting does not make v1 the newest again.
    await old.stop();
    const restarted = await worker({ plugins: [v1] });
    expect((await client.submit(v2, { width: 3, height: 4 })).status).toBe(TaskStatus.QUEUED);

    // Rolled back: the v2 workers are gone, so the newest served version is v1 again.
    await next.stop();
    ({ types } = await client.listTaskTypes({}));
    resize = types.find((t) => t.name === "resize")!;
    expect(resize.versions.map((v) => [v.current, v.workers])).toEqual([[false, []], [true, [restarted.workerId]]]);
    await new Promise((r) => setTimeout(r, 1_100)); // the server's per-type cache (1 s) lets v2 input pass that long
    expect((await errorOf(client.submit(v2, { width: 1, height: 2 })))?.rawMessage).toBe("parameters.height: is not a known parameter");
  });

  it("ends attempts of plugins that throw a non-Error, never resolve, or ignore their signal; the slot is freed", async () => {
    const bad = definePlugin({
      name: "misbehave",
      description: "",
      parameters: z.object({ how: z.enum(["throw_string", "throw_object", "never", "ignore_signal", "permanent"]) }),
      defaults: { timeoutMs: 300, maxAttempts: 1 },
      async run({ how }, ctx) {
        if (how === "throw_string") throw "plain string";
        if (how === "throw_object") throw { code: 42 };
        if (how === "permanent") throw new PermanentTaskError("never works");
        if (how === "never") return new Promise<never>(() => undefined);
        // Busy, ignoring ctx.signal: resolves long after the timeout.
        await new Promise((r) => setTimeout(r, 30_000).unref());
        return { ignored: ctx.signal.aborted };
      },
    });
    const quick = definePlugin({ name: "quick", description: "", parameters: z.object({}), run: async () => ({ ok: true }) });
    // One slot: the quick task can only run once the stuck attempts have let go of it.
    await worker({ plugins: [bad, quick], concurrency: 1, abortGraceMs: 200 });
    const ids = [];
    for (const how of ["throw_string", "throw_object", "never", "ignore_signal", "permanent"] as const) ids.push((await client.submit(bad, { how }, { maxAttempts: how === "permanent" ? 3 : 1 })).id);
    const after = await client.submit(quick, {});
    const results = await Promise.all(ids.map((id) => client.waitFor(id, { timeoutMs: 30_000 })));
    expect(results.map((t) => [t.status, t.lastError, t.attempts])).toEqual([
      [TaskStatus.FAILED, "plain string", 1],
      [TaskStatus.FAILED, 'non-Error thrown: {"code":42}', 1],
      [TaskStatus.FAILED, "timed out after 300ms", 1],
      [TaskStatus.FAILED, "timed out after 300ms", 1],
      [TaskStatus.FAILED, "never works", 1],
    ]);
    expect((await client.waitFor(after.id, { timeoutMs: 30_000 })).status).toBe(TaskStatus.SUCCEEDED);
  });
});
