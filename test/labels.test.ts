import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { mkdtempSync } from "node:fs";
import { rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../src/gen/task/v1/agent_pb.js";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { Role } from "../src/gen/task/v1/token_pb.js";
import { bearerToken } from "../src/sdk/client.js";
import { createTaskClient, definePlugin, startAgent as startSdkAgent, startWorker, z } from "../src/sdk/index.js";
import { claimAttempt, claimKeyedAttempts, claimNextAttempts, recordOutcomes } from "../src/store/lifecycle/index.js";
import { labeledRunTaskPrefix, runTaskIdentifier } from "../src/store/jobs.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";
import { expectConnectError, taskRequest } from "./helpers/factory.js";
import { alive, startWorkerProcess } from "./helpers/fault-workers.js";
import { spawnCli, type CliProcess } from "./helpers/process.js";
import { clientsAs, CONFIGURED, TOKENS } from "./helpers/tokens.js";
import { waitFor } from "./helpers/wait.js";

// Routing by labels (issue 26 item 3): real worker processes (task-cli serve --labels) and a real
// agent (task-cli agent, its labels its token's) take only the tasks whose labels they have; a task
// nobody can run waits QUEUED and says why until a worker with its labels starts.

let api: TestApi;
const processes: CliProcess[] = [];
const admin = () => clientsAs(api.server.url, TOKENS.admin);
const pool = () => api.database.db.pool;
const cli = (...args: string[]) => runCli(["--address", api.server.url, "--token", TOKENS.admin, ...args]);

beforeAll(async () => {
  api = await startTestApi({ config: { apiTokens: CONFIGURED }, interceptors: [bearerToken(TOKENS.admin)] });
});
afterAll(async () => {
  for (const p of processes) if (alive(p)) p.child.kill("SIGKILL");
  await api?.close();
});

async function serve(args: string[], env: Record<string, string> = {}): Promise<{ proc: CliProcess; workerId: string }> {
  const proc = await startWorkerProcess(pool(), api.database.url, env, ["-n", "4", ...args]);
  processes.push(proc);
  const { rows } = await pool().query("select id from workers where id like $1", [`%-${proc.child.pid}-%`]);
  return { proc, workerId: rows[0].id as string };
}

/** The workers each task's attempts started on, from its history ("attempt N started on <worker>"). */
async function ranOn(ids: bigint[]): Promise<Map<string, string[]>> {
  const { rows } = await pool().query(
    "select task_id::text as id, substring(details from ' started on (.*)$') as worker from task_history where task_id = any($1::bigint[]) and details like 'attempt % started on %'",
    [ids.map(String)],
  );
  const by = new Map<string, string[]>();
  for (const r of rows) by.set(r.id, [...(by.get(r.id) ?? []), r.worker]);
  return by;
}

async function allSucceeded(ids: bigint[], what: string): Promise<void> {
  await waitFor(
    async () => (await pool().query("select count(*)::int as n from tasks where id = any($1::bigint[]) and status = 'succeeded'", [ids.map(String)])).rows[0].n === ids.length,
    what,
    60_000,
  );
}

describe("routing by labels across processes", () => {
  let eu: string;
  let agentId: string;

  it("a serve --labels process and an agent with its token's labels each run only the tasks whose labels they have", async () => {
    eu = (await serve(["--labels", "region=eu"])).workerId;
    const token = (await admin().token.createToken({ name: "us-1", role: Role.AGENT, labels: { region: "us", gpu: "true" } })).secret;
    const agent = spawnCli(["agent", "--server", api.server.url, "--name", "us-1", "-n", "4"], { LOG_LEVEL: "info", TASK_TOKEN: token });
    processes.push(agent);
    await waitFor(() => agent.output().includes('"msg":"agent registered"'), `the agent to register:\n${agent.output()}`, 60_000);
    const { rows } = await pool().query("select id, labels from workers where id like 'agent:us-1:%'");
    agentId = rows[0].id;
    // No --labels: the agent has its token's labels.
    expect(rows[0].labels).toEqual(["gpu=true", "region=us"]);

    const viaCli = await cli("task", "create", "eu-cli", "--type", "noop", "--on", "region=eu", "-o", "json");
    expect(viaCli.code, viaCli.stderr).toBe(0);
    const euCli = BigInt(JSON.parse(viaCli.stdout).task.id);
    const make = (prefix: string, labels: Record<string, string>, n: number) =>
      Array.from({ length: n }, (_, i) => taskRequest({ name: `${prefix}-${i}`, labels }));
    const { tasks } = await api.client.createTasks({
      tasks: [...make("eu", { region: "eu" }, 12), ...make("us", { region: "us" }, 12), ...make("gpu", { gpu: "true" }, 6), ...make("any", {}, 12)],
    });
    const ids = (prefix: string) => tasks.filter((t) => t.name.startsWith(`${prefix}-`)).map((t) => t.id);
    expect(tasks.find((t) => t.name === "gpu-0")!.labels).toEqual({ gpu: "true" });
    await allSucceeded([euCli, ...tasks.map((t) => t.id)], "every routed task to succeed");

    const on = await ranOn([euCli, ...tasks.map((t) => t.id)]);
    const workersOf = (list: bigint[]) => [...new Set(list.flatMap((id) => on.get(String(id)) ?? []))].sort();
    expect(workersOf([euCli, ...ids("eu")])).toEqual([eu]);
    expect(workersOf(ids("us"))).toEqual([agentId]);
    expect(workersOf(ids("gpu"))).toEqual([agentId]);
    // Unlabeled tasks run anywhere.
    expect(workersOf(ids("any")).every((w) => w === eu || w === agentId)).toBe(true);
  });

  it("a task whose labels no live worker has waits QUEUED and says why, then runs when a worker with them starts", async () => {
    const { task } = await api.client.createTask(taskRequest({ name: "ap", labels: { region: "ap" } }));
    const id = task!.id;
    // The eu worker and the us agent are idle and claiming: neither takes it.
    await new Promise((r) => setTimeout(r, 1_500));
    const got = await cli("task", "get", "--id", String(id));
    expect(got.code, got.stderr).toBe(0);
    expect(got.stdout).toMatch(/QUEUED/);
    expect(got.stdout).toMatch(/Runs on\s+workers with labels region=ap/);
    expect(got.stdout).toMatch(/Waiting for\s+no live worker or agent has labels region=ap/);
    const workers = await cli("workers");
    expect(workers.code, workers.stderr).toBe(0);
    expect(workers.stdout).toMatch(/LABELS/);
    expect(workers.stdout).toMatch(/region=eu/);
    expect(workers.stdout).toMatch(/gpu=true,region=us/);
    expect(workers.stdout).toMatch(/1 waiting task require labels no live worker or agent has: region=ap \(1\)/);

    // Labels from the environment (TASK_WORKER_LABELS); it has one more than the task needs.
    const ap = (await serve([], { TASK_WORKER_LABELS: "zone=1,region=ap" })).workerId;
    await allSucceeded([id], "the ap task to run once an ap worker is up");
    expect(await ranOn([id])).toEqual(new Map([[String(id), [ap]]]));
    const after = await cli("workers");
    expect(after.stdout).not.toMatch(/require labels/);
    expect(after.stdout).toMatch(/region=ap,zone=1/);
  });
});

describe("an agent token's labels", () => {
  const agentClient = (token: string) => createClient(AgentService, createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1", interceptors: [bearerToken(token)] }));
  const workerRows = async () => (await pool().query("select count(*)::int as n from workers")).rows[0].n as number;

  it("fix what its agents may claim: a label outside them is PermissionDenied and writes nothing; fewer, or none (the token's), are accepted", async () => {
    const token = (await admin().token.createToken({ name: "eu-1", role: Role.AGENT, labels: { region: "eu", disk: "ssd" } })).secret;
    const listed = await cli("agent", "token", "list");
    expect(listed.stdout).toMatch(/eu-1\s+all\s+disk=ssd,region=eu/);
    const agent = agentClient(token);
    const before = await workerRows();
    await expectConnectError(agent.register({ name: "eu-1", slots: 1, types: ["noop"], labels: { region: "us" } }), Code.PermissionDenied, /region=us are outside token eu-1's labels/);
    await expectConnectError(agent.register({ name: "eu-1", slots: 1, types: ["noop"], labels: { region: "eu", gpu: "true" } }), Code.PermissionDenied, /gpu=true/);
    expect(await workerRows()).toBe(before);

    const fewer = await agent.register({ name: "eu-1", slots: 1, types: ["noop"], labels: { region: "eu" } });
    expect(fewer.labels).toEqual({ region: "eu" });
    const implied = await agent.register({ name: "eu-1", slots: 1, types: ["noop"] });
    expect(implied.labels).toEqual({ disk: "ssd", region: "eu" });
    const { rows } = await pool().query("select labels from workers where id = $1", [implied.agentId]);
    expect(rows[0].labels).toEqual(["disk=ssd", "region=eu"]);
  });

  it("are for agent tokens only, and checked like a task's", async () => {
    await expectConnectError(admin().token.createToken({ name: "op-labels", role: Role.OPERATOR, labels: { region: "eu" } }), Code.InvalidArgument, /only an agent token/);
    await expectConnectError(admin().token.createToken({ name: "bad-labels", role: Role.AGENT, labels: { "Region": "eu" } }), Code.InvalidArgument, /not a label key/);
    expect((await pool().query("select count(*)::int as n from api_tokens where name in ('op-labels', 'bad-labels')")).rows[0].n).toBe(0);
  });
});

describe("bad labels", () => {
  const taskCount = async () => (await pool().query("select count(*)::int as n from tasks")).rows[0].n as number;

  it("are InvalidArgument and create nothing, alone or in a batch", async () => {
    const before = await taskCount();
    const tooMany = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"]));
    for (const [labels, message] of [
      [{ "Bad Key": "x" }, /not a label key/],
      [{ region: "e,u" }, /not a label value/],
      [{ region: "" }, /not a label value/],
      [{ ["k".repeat(64)]: "v" }, /not a label key/],
      [{ region: "v".repeat(64) }, /not a label value/],
      [tooMany, /at most 16 labels/],
    ] as const) {
      const err = await expectConnectError(api.client.createTask(taskRequest({ labels })), Code.InvalidArgument, message);
      expect(err.message).toMatch(/labels/);
    }
    await expectConnectError(
      api.client.createTasks({ tasks: [taskRequest({ labels: { region: "eu" } }), taskRequest({ labels: { "a=b": "c" } })] }),
      Code.InvalidArgument,
      /tasks\[1\]\.labels/,
    );
    expect(await taskCount()).toBe(before);
  });

  it("in flags are usage errors: task create --on, serve --labels", async () => {
    const before = await taskCount();
    const noValue = await cli("task", "create", "x", "--type", "noop", "--on", "region");
    expect(noValue.code).toBe(2);
    expect(noValue.stderr).toMatch(/--on: "region" is not a label/);
    const twice = await cli("task", "create", "x", "--type", "noop", "--on", "region=eu,region=us");
    expect(twice.code).toBe(2);
    expect(twice.stderr).toMatch(/label region is given twice/);
    expect(await taskCount()).toBe(before);
    const bad = spawnCli(["serve", "--labels", "Region=eu"], { DATABASE_URL: api.database.url });
    processes.push(bad);
    const code = await bad.exited;
    expect(code).not.toBe(0);
    expect(bad.output()).toMatch(/not a label key/);
  });
});

describe("a schedule's labels", () => {
  it("go to each tick's task, and bad ones are refused with nothing stored", async () => {
    const spec = (labels: Record<string, string>) => ({ name: `routed-${Object.keys(labels).length}`, cron: "@daily", task: { type: "noop", labels } });
    const { schedule } = await admin().schedule.createSchedule({ spec: spec({ region: "ap" }) });
    expect(schedule!.spec!.task!.labels).toEqual({ region: "ap" });
    const { task } = await admin().schedule.triggerSchedule({ name: schedule!.spec!.name });
    expect(task!.labels).toEqual({ region: "ap" });
    const shown = await cli("schedule", "get", schedule!.spec!.name);
    expect(shown.stdout).toMatch(/Runs on\s+workers with labels region=ap/);
    await expectConnectError(admin().schedule.createSchedule({ spec: spec({ region: "a p", zone: "1" }) }), Code.InvalidArgument, /task\.labels/);
    expect((await pool().query("select count(*)::int as n from schedules")).rows[0].n).toBe(1);
  });
});

describe("the SDK", () => {
  it("startWorker({ labels }) runs what client.submit(..., { labels }) routes to it", async () => {
    const echo = definePlugin({ name: "sdk_echo", description: "Returns its input", parameters: z.object({ n: z.number() }), async run(p) { return { n: p.n }; } });
    const spoolDir = path.join(os.tmpdir(), `labels-spool-${api.database.name}`);
    const worker = await startWorker({ databaseUrl: api.database.url, plugins: [echo], labels: { region: "sdk" }, logLevel: "silent", env: {}, spoolDir, queues: ["sdk"] });
    try {
      const client = createTaskClient({ address: api.server.url, token: TOKENS.admin });
      const task = await client.submit(echo, { n: 1 }, { queue: "sdk", labels: { region: "sdk" } });
      expect(task.labels).toEqual({ region: "sdk" });
      await allSucceeded([task.id], "the SDK task to succeed");
      expect(await ranOn([task.id])).toEqual(new Map([[String(task.id), [worker.workerId]]]));
      expect((await pool().query("select labels from workers where id = $1", [worker.workerId])).rows[0].labels).toEqual(["region=sdk"]);
    } finally {
      await worker.stop();
      await rm(spoolDir, { recursive: true, force: true });
    }
  });
});

describe("the SDK's startAgent", () => {
  it("registers with its labels and runs the tasks routed to them", async () => {
    const echo = definePlugin({ name: "sdk_agent_echo", description: "Returns its input", parameters: z.object({ n: z.number() }), async run(p) { return { n: p.n }; } });
    const token = (await admin().token.createToken({ name: "sdk-agent", role: Role.AGENT })).secret;
    const agent = startSdkAgent({ server: api.server.url, token, name: "sdk-agent", plugins: [echo], labels: { region: "sdk2" }, queues: ["sdk2"], logLevel: "silent", spoolDir: mkdtempSync(path.join(os.tmpdir(), "agent-spool-")) });
    try {
      await waitFor(() => agent.agentId, "the SDK agent to register");
      const client = createTaskClient({ address: api.server.url, token: TOKENS.admin });
      const task = await client.submit(echo, { n: 2 }, { queue: "sdk2", labels: { region: "sdk2" } });
      await allSucceeded([task.id], "the SDK agent's task to succeed");
      expect(await ranOn([task.id])).toEqual(new Map([[String(task.id), [agent.agentId!]]]));
    } finally {
      await agent.stop();
    }
  });
});

describe("the claim's label filter (guard)", () => {
  // Queue `guard`: no process above serves it, so only these direct claims touch its tasks.
  const labeled = (labels: Record<string, string>, extra: Record<string, unknown> = {}) => api.client.createTask(taskRequest({ queue: "guard", labels, ...extra }));
  const db = () => api.database.db;

  it("no statement starts a labeled task for a claimer without its labels, even when handed the task's job", async () => {
    const { task } = await labeled({ region: "eu", gpu: "true" });
    const { task: keyed } = await labeled({ region: "eu" }, { key: "k1" });
    // The labeled job's identifier given as a plain one: only the statement's own check stands in the way.
    // The job's identifier: its (queue, type)'s labeled prefix and its label set's id.
    const setId = (await pool().query("select task_label_set_id($1::text[]) as id", [["gpu=true", "region=eu"]])).rows[0].id as string;
    const identifier = `${labeledRunTaskPrefix("guard", "noop")}${setId}`;
    const handed = { identifiers: [runTaskIdentifier("guard", "noop"), identifier], forbiddenFlags: [], limit: 4 };
    expect(await claimNextAttempts(db(), "guard-w1", handed)).toEqual([]);
    expect(await claimNextAttempts(db(), "guard-w1", { ...handed, labels: ["region=eu"] })).toEqual([]);
    expect(await claimKeyedAttempts(db(), "guard-w1", { queues: ["guard"], types: ["noop"], limit: 4 })).toEqual([]);
    expect(await claimKeyedAttempts(db(), "guard-w1", { queues: ["guard"], types: ["noop"], limit: 4, labels: ["region=us"] })).toEqual([]);
    // By id: the claimer's worker row has no labels.
    expect(await claimAttempt(db(), task!.id.toString(), 1, "guard-w1")).toBeUndefined();
    const status = async (id: bigint) => (await api.client.getTask({ id })).task!.status;
    expect(await status(task!.id)).toBe(TaskStatus.QUEUED);
    expect(await status(keyed!.id)).toBe(TaskStatus.QUEUED);

    // With the labels (and more), each is started.
    const both = ["gpu=true", "region=eu", "zone=1"];
    const got = await claimNextAttempts(db(), "guard-w2", { identifiers: [runTaskIdentifier("guard", "noop")], labeledPrefixes: [labeledRunTaskPrefix("guard", "noop")], labels: both, forbiddenFlags: [], limit: 4 });
    expect(got.map((t) => t.id)).toEqual([task!.id.toString()]);
    const gotKeyed = await claimKeyedAttempts(db(), "guard-w2", { queues: ["guard"], types: ["noop"], limit: 4, labels: both });
    expect(gotKeyed.map((t) => t.id)).toEqual([keyed!.id.toString()]);

    // A retry's job is filed under the labeled identifier again, so it stays routed.
    const jobOf = async (id: bigint) => (await pool().query("select task_identifier from graphile_worker.jobs where key = $1", [`task:${id}`])).rows[0]?.task_identifier;
    const [retried] = await recordOutcomes(db(), [{ taskId: task!.id.toString(), attempt: 1, workerId: "guard-w2", outcome: { kind: "retrying", error: "x", details: "failed", retryAt: new Date() } }]);
    expect(retried?.status).toBe("retrying");
    expect(await jobOf(task!.id)).toBe(identifier);
    expect(await claimNextAttempts(db(), "guard-w1", { identifiers: [runTaskIdentifier("guard", "noop")], labeledPrefixes: [labeledRunTaskPrefix("guard", "noop")], labels: ["region=us"], forbiddenFlags: [], limit: 4 })).toEqual([]);
    const again = await claimNextAttempts(db(), "guard-w2", { identifiers: [runTaskIdentifier("guard", "noop")], labeledPrefixes: [labeledRunTaskPrefix("guard", "noop")], labels: both, forbiddenFlags: [], limit: 4 });
    expect(again.map((t) => [t.id, t.attempts])).toEqual([[task!.id.toString(), 2]]);
  });
});
