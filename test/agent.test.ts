import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Code, ConnectError } from "@connectrpc/connect";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService, AttemptResult_Kind } from "../src/gen/task/v1/agent_pb.js";
import { TaskStatus, type Task } from "../src/gen/task/v1/task_pb.js";
import { Role } from "../src/gen/task/v1/token_pb.js";
import { bearerToken } from "../src/sdk/client.js";
import { definePlugin, startAgent as startSdkAgent, z } from "../src/sdk/index.js";
import type { Workers } from "../src/worker/runner.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { expectConnectError, taskRequest } from "./helpers/factory.js";
import { spawnCli, type CliProcess } from "./helpers/process.js";
import { clientsAs, CONFIGURED, TOKENS } from "./helpers/tokens.js";
import { waitFor } from "./helpers/wait.js";
import { startTestWorkers } from "./helpers/workers.js";
import { firstStart } from "./helpers/agent-stream.js";
import { startTcpProxy } from "../scripts/chaos/tcp-proxy.js";

// Remote agents (issue 26): real `task-cli agent` processes with no DATABASE_URL, a real API server
// over HTTP/1.1 and h2c, and database workers of queue `default` only (they run the reconciler that
// rescues an agent's lost attempts; the agents serve queue `remote`).

const TIMING = { leaseMs: 4_000, heartbeatIntervalMs: 500 };
let api: TestApi;
let workers: Workers;
const agents: CliProcess[] = [];
const admin = () => clientsAs(api.server.url, TOKENS.admin);

beforeAll(async () => {
  api = await startTestApi({ config: { apiTokens: CONFIGURED, ...TIMING }, interceptors: [bearerToken(TOKENS.admin)] });
  workers = await startTestWorkers(api.database, { ...TIMING, workerQueues: ["default"] });
});
afterAll(async () => {
  for (const a of agents) if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill("SIGKILL");
  await workers?.stop();
  await api?.close();
});

async function agentToken(name: string, queues: string[] = ["remote"]): Promise<string> {
  return (await admin().token.createToken({ name, role: Role.AGENT, queues })).secret;
}

/** Starts `task-cli agent` with an environment that holds no database URL, and waits until it registered. */
async function startAgent(token: string, args: string[] = []): Promise<CliProcess> {
  const env = { LOG_LEVEL: "info", TASK_TOKEN: token };
  expect(Object.keys(env).some((k) => k.includes("DATABASE"))).toBe(false);
  const proc = spawnCli(["agent", "--server", api.server.url, "--enable-shell", "-n", "4", "--spool-dir", mkdtempSync(path.join(os.tmpdir(), "agent-spool-")), ...args], env);
  agents.push(proc);
  await waitFor(() => proc.output().includes('"msg":"agent registered"'), `the agent to register:\n${proc.output()}`, 60_000);
  return proc;
}

async function waitStatus(id: bigint, status: TaskStatus, ms = 30_000): Promise<Task> {
  return waitFor(async () => {
    const t = (await api.client.getTask({ id })).task!;
    return t.status === status ? t : undefined;
  }, `task ${id} to be ${TaskStatus[status]}`, ms);
}

const shell = (command: string, extra: Record<string, unknown> = {}) => taskRequest({ type: "shell", queue: "remote", parameters: { command }, ...extra });

describe("a remote agent", () => {
  it("runs noop and shell tasks to SUCCEEDED over HTTP/1.1 and HTTP/2, with its output stored", async () => {
    for (const [name, args] of [["h1", []], ["h2", ["--http2"]]] as const) {
      const agent = await startAgent(await agentToken(`agent-${name}`), ["--name", `eu-${name}`, ...args]);
      const noop = (await api.client.createTask(taskRequest({ type: "noop", queue: "remote", name: `noop-${name}` }))).task!;
      const sh = (await api.client.createTask(shell(`echo hello from ${name}; echo oops >&2`))).task!;
      await waitStatus(noop.id, TaskStatus.SUCCEEDED);
      const done = await waitStatus(sh.id, TaskStatus.SUCCEEDED);
      expect(done.attempts).toBe(1);
      const logs = await api.client.getTaskLogs({ id: sh.id });
      expect(logs.lines.map((l) => l.line)).toEqual(expect.arrayContaining([`hello from ${name}`, "oops"]));
      const { workers: listed } = await admin().worker.listWorkers({});
      const row = listed.find((w) => w.id.startsWith(`agent:agent-${name}:eu-${name}:`));
      expect(row?.queues).toEqual(["remote"]);
      expect(row?.types).toContain("shell");
      agent.child.kill("SIGTERM");
      expect(await agent.exited).toBe(0);
    }
  }, 120_000);

  it("stops a running task when it is cancelled", async () => {
    const agent = await startAgent(await agentToken("agent-cancel"), ["--name", "canceller"]);
    const task = (await api.client.createTask(shell("echo started; sleep 60"))).task!;
    await waitFor(async () => (await api.client.getTaskLogs({ id: task.id })).lines.some((l) => l.line === "started"), "the shell to start");
    const asked = Date.now();
    await api.client.cancelTask({ id: task.id, reason: "enough" });
    await waitStatus(task.id, TaskStatus.CANCELLED, 15_000);
    const { history } = await api.client.getTaskHistory({ id: task.id });
    expect(history.at(-1)?.details).toMatch(/cancelled by request while running/);
    expect(Date.now() - asked).toBeLessThan(10_000);
    agent.child.kill("SIGTERM");
    await agent.exited;
  }, 60_000);

  it("stops a paused shell task's process and continues it on resume", async () => {
    const agent = await startAgent(await agentToken("agent-pause"), ["--name", "pauser"]);
    // Prints a counter every 200 ms: while paused (SIGSTOP), no line may appear.
    const task = (await api.client.createTask(shell("for i in $(seq 15); do echo $i; sleep 0.2; done"))).task!;
    const lines = async () => (await api.client.getTaskLogs({ id: task.id })).lines.length;
    await waitFor(async () => (await lines()) >= 2, "the counter to start");
    await admin().control.pauseTask({ id: task.id });
    await waitStatus(task.id, TaskStatus.PAUSED);
    await new Promise((r) => setTimeout(r, 700));
    const held = await lines();
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await lines()).toBe(held);
    await admin().control.resumeTask({ id: task.id });
    const done = await waitStatus(task.id, TaskStatus.SUCCEEDED);
    expect(done.attempts).toBe(1);
    expect(await lines()).toBe(15);
    agent.child.kill("SIGTERM");
    await agent.exited;
  }, 60_000);

  it("after kill -9 of the agent mid-task, the task is retried by another agent within the grace and succeeds once", async () => {
    const token = await agentToken("agent-crash");
    const first = await startAgent(token, ["--name", "doomed"]);
    // The first attempt runs until killed; the retry ends at once.
    const task = (await api.client.createTask(shell('echo begin; [ "$TASK_ATTEMPT" = 1 ] && sleep 60; echo end', { maxAttempts: 3 }))).task!;
    await waitFor(async () => (await api.client.getTaskLogs({ id: task.id })).lines.some((l) => l.line === "begin"), "the first attempt to start");
    // Up before the kill, so its start-up time is not measured.
    const second = await startAgent(token, ["--name", "rescuer"]);
    first.child.kill("SIGKILL");
    const killedAt = Date.now();
    await first.exited;
    const done = await waitStatus(task.id, TaskStatus.SUCCEEDED, 40_000);
    expect(done.attempts).toBe(2);
    const { history } = await api.client.getTaskHistory({ id: task.id });
    const details = history.map((h) => h.details);
    expect(details.filter((d) => /succeeded/.test(d))).toHaveLength(1);
    // Lost by the grace after its stream ended, or (the grace being the lease here) by the workers' reconciler.
    expect(details.some((d) => /attempt 1 lost: worker agent:agent-crash:doomed:/.test(d))).toBe(true);
    const restarted = history.find((h) => /attempt 2 started on agent:agent-crash:rescuer:/.test(h.details));
    expect(restarted).toBeDefined();
    // The grace after the stream ended (the lease, 4 s, here; 6 s by default), not a lease from the last heartbeat.
    expect(Number(restarted!.createdAt!.seconds) * 1000 - killedAt).toBeLessThan(4_000 + 3_000);
    second.child.kill("SIGTERM");
    await second.exited;
  }, 90_000);
});

describe("a remote agent behind a proxy the test controls", () => {
  it("keeps its running attempt across a dropped connection: it reconnects, the attempt succeeds once", async () => {
    const proxy = await startTcpProxy([api.server.url]);
    try {
      const proc = spawnCli(["agent", "--server", proxy.url, "--enable-shell", "-n", "2", "--name", "flaky", "--spool-dir", mkdtempSync(path.join(os.tmpdir(), "agent-spool-"))], { LOG_LEVEL: "info", TASK_TOKEN: await agentToken("agent-flaky") });
      agents.push(proc);
      await waitFor(() => proc.output().includes('"msg":"agent registered"'), "the agent to register", 60_000);
      const task = (await api.client.createTask(shell("echo before; sleep 3; echo after"))).task!;
      await waitFor(async () => (await api.client.getTaskLogs({ id: task.id })).lines.some((l) => l.line === "before"), "the attempt to start");
      // Every connection through the proxy is cut: the stream and any call in flight fail.
      proxy.drop();
      const done = await waitStatus(task.id, TaskStatus.SUCCEEDED, 30_000);
      expect(done.attempts).toBe(1);
      expect((await api.client.getTaskLogs({ id: task.id })).lines.map((l) => l.line)).toEqual(["before", "after"]);
      expect(proc.output()).toMatch(/reconnecting/);
      proc.child.kill("SIGTERM");
      await proc.exited;
    } finally {
      await proxy.close();
    }
  }, 60_000);
});

describe("startAgent (SDK)", () => {
  it("runs a custom type that only the agent knows: its type joins the catalog, its output and result are stored", async () => {
    const greet = definePlugin({
      name: "agent_greet",
      description: "Says hello from an agent",
      parameters: z.object({ who: z.string().min(1) }),
      defaults: { queue: "remote" },
      run: async ({ who }, ctx) => {
        ctx.output.write("stdout", `hello ${who}`);
        return { greeted: who };
      },
    });
    const agent = startSdkAgent({ server: api.server.url, token: await agentToken("agent-sdk"), plugins: [greet], name: "sdk", slots: 2, logLevel: "warn", spoolDir: mkdtempSync(path.join(os.tmpdir(), "agent-spool-")) });
    try {
      await waitFor(() => agent.agentId, "the SDK agent to register");
      // Checked at create against the schema the agent registered.
      await expectConnectError(api.client.createTask({ name: "bad", type: "agent_greet", parameters: { who: "" } }), Code.InvalidArgument, /who/);
      const task = (await api.client.createTask({ name: "greet", type: "agent_greet", parameters: { who: "eu" } })).task!;
      expect(task.queue).toBe("remote");
      const done = await waitStatus(task.id, TaskStatus.SUCCEEDED);
      expect(done.result).toEqual({ greeted: "eu" });
      expect((await api.client.getTaskLogs({ id: task.id })).lines.map((l) => l.line)).toEqual(["hello eu"]);
    } finally {
      await agent.stop();
    }
  }, 60_000);
});

describe("AgentService", () => {
  const agentClient = (token: string, httpVersion: "1.1" | "2" = "1.1") =>
    createClient(AgentService, createConnectTransport({ baseUrl: api.server.url, httpVersion, interceptors: [bearerToken(token)] }));

  it("refuses an agent token everywhere but AgentService, and bad Register input", async () => {
    const token = await agentToken("agent-scope");
    const other = clientsAs(api.server.url, token);
    await expectConnectError(other.task.listTasks({}), Code.PermissionDenied);
    await expectConnectError(other.task.createTask(taskRequest({ queue: "remote" })), Code.PermissionDenied);
    await expectConnectError(other.token.whoAmI({}), Code.PermissionDenied);
    const agent = agentClient(token);
    await expectConnectError(agent.register({ name: "x", slots: 0, types: ["noop"] }), Code.InvalidArgument, /slots/);
    await expectConnectError(agent.register({ name: "Bad Name", slots: 1, types: ["noop"] }), Code.InvalidArgument, /name/);
    await expectConnectError(agent.register({ name: "x", slots: 1, types: [] }), Code.InvalidArgument, /types/);
    // The token fixes the queues: the agent cannot widen them.
    await expectConnectError(agent.register({ name: "x", slots: 1, types: ["noop"], queues: ["default"] }), Code.PermissionDenied, /outside/);
    const { agentId } = await agent.register({ name: "x", slots: 1, types: ["noop"] });
    // Another token cannot act as this agent.
    const intruder = agentClient(await agentToken("agent-intruder"));
    await expectConnectError(intruder.heartbeat({ agentId, attempts: [] }), Code.PermissionDenied);
    // A reader token cannot call AgentService at all.
    await expectConnectError(agentClient(TOKENS.reader).register({ name: "x", slots: 1, types: ["noop"] }), Code.PermissionDenied);
  });

  it("takes back a start the agent never acknowledges, and a late outcome records nothing", async () => {
    const agent = agentClient(await agentToken("agent-silent", ["silent"]), "2");
    const { agentId } = await agent.register({ name: "mute", slots: 1, types: ["noop"] });
    const task = (await api.client.createTask(taskRequest({ type: "noop", queue: "silent" }))).task!;
    const ac = new AbortController();
    const start = await firstStart(agent, agentId, ac.signal);
    expect(start.taskId).toBe(task.id);
    // The agent stays alive (it beats) but never names the attempt, as if the start were lost on the
    // stream: within the ack time (5 s, or half the lease: 2 s here) it is taken back, before the lease would.
    const beats = setInterval(() => void agent.heartbeat({ agentId, attempts: [] }).catch(() => undefined), 300);
    // (The session may then claim it again for this agent, as attempt 2: the same fate awaits it.)
    const details = await waitFor(async () => {
      const { history } = await api.client.getTaskHistory({ id: task.id });
      const text = history.map((h) => h.details).join("\n");
      return /attempt 1 lost/.test(text) ? text : undefined;
    }, "the start to be taken back", 15_000);
    clearInterval(beats);
    expect(details).toMatch(/attempt 1 lost: .* sent no heartbeat for 2s \(its assignment was not acknowledged\); retrying now/);
    // The agent's outcome for the attempt it lost is refused, and its heartbeat does not own it.
    const beat = await agent.heartbeat({ agentId, attempts: [{ taskId: task.id, attempt: 1 }] });
    expect(beat.owned).toEqual([]);
    const late = await agent.reportOutcomes({ agentId, results: [{ taskId: task.id, attempt: 1, kind: 1, resultJson: "{}" }] });
    expect(late.recorded).toEqual([false]);
    ac.abort();
  }, 40_000);

  it("stores a log batch sent twice once, in order, and records the outcome of an acknowledged attempt", async () => {
    const agent = agentClient(await agentToken("agent-direct", ["direct"]));
    const { agentId } = await agent.register({ name: "direct", slots: 1, types: ["noop"] });
    const task = (await api.client.createTask(taskRequest({ type: "noop", queue: "direct" }))).task!;
    const ac = new AbortController();
    const start = await firstStart(agent, agentId, ac.signal);
    const ref = { taskId: task.id, attempt: start.attempt };
    expect((await agent.heartbeat({ agentId, attempts: [ref] })).owned).toHaveLength(1);
    const line = (text: string) => ({ stream: "stdout", line: text });
    const first = { ...ref, firstLine: 0n, lines: [line("one"), line("two")] };
    expect((await agent.appendLogs({ agentId, batches: [first] })).stored).toEqual([true]);
    // Its answer was lost: the agent sends it again, with the next lines after it.
    await agent.appendLogs({ agentId, batches: [first] });
    await agent.appendLogs({ agentId, batches: [{ ...ref, firstLine: 2n, lines: [line("three")] }] });
    expect((await api.client.getTaskLogs({ id: task.id })).lines.map((l) => l.line)).toEqual(["one", "two", "three"]);
    await expectConnectError(agent.appendLogs({ agentId, batches: [{ ...ref, lines: [{ stream: "nope", line: "x" }] }] }), Code.InvalidArgument, /stream/);
    const outcome = { ...ref, kind: AttemptResult_Kind.SUCCEEDED, resultJson: '{"ok":true}' };
    expect((await agent.reportOutcomes({ agentId, results: [outcome] })).recorded).toEqual([true]);
    expect((await agent.reportOutcomes({ agentId, results: [outcome] })).recorded).toEqual([false]);
    expect((await agent.appendLogs({ agentId, batches: [{ ...ref, firstLine: 3n, lines: [line("late")] }] })).stored).toEqual([false]);
    const done = await waitStatus(task.id, TaskStatus.SUCCEEDED, 5_000);
    expect(done.result).toEqual({ ok: true });
    ac.abort();
  });

  it("ends a revoked token's stream within seconds", async () => {
    const token = await agentToken("agent-revoked", ["revoked"]);
    const agent = agentClient(token);
    const { agentId } = await agent.register({ name: "soon-gone", slots: 1, types: ["noop"] });
    const ended = (async () => {
      try {
        for await (const _ of agent.assignments({ agentId })) void _;
        return "ended";
      } catch (err) {
        return ConnectError.from(err).code;
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    const revokedAt = Date.now();
    await admin().token.revokeToken({ name: "agent-revoked" });
    expect(await ended).toBe(Code.Unauthenticated);
    expect(Date.now() - revokedAt).toBeLessThan(5_000);
  }, 20_000);
});
