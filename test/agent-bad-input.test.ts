import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import http from "node:http";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService, AttemptResult_Kind } from "../src/gen/task/v1/agent_pb.js";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { Role } from "../src/gen/task/v1/token_pb.js";
import { MAX_AGENT_BATCH, MAX_LOG_LINES_PER_BATCH } from "../src/api/agent-service.js";
import { bearerToken } from "../src/sdk/client.js";
import { definePlugin, startAgent, z } from "../src/sdk/index.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { expectConnectError, taskRequest } from "./helpers/factory.js";
import { clientsAs, CONFIGURED, TOKENS } from "./helpers/tokens.js";
import { firstStart } from "./helpers/agent-stream.js";
import { waitFor } from "./helpers/wait.js";

// Issue 26, "Bad input": oversized batches, outcomes and lines for attempts the agent does not hold,
// and a stream opened and never read. Each gets its code, writes nothing, and the server stays
// responsive. (Unknown and revoked tokens, and labels or queues outside the token's, are in
// test/agent.test.ts and test/labels.test.ts.)

const MAX_REQUEST_BYTES = 256 * 1024;
let api: TestApi;
const admin = () => clientsAs(api.server.url, TOKENS.admin);

beforeAll(async () => {
  api = await startTestApi({
    config: { apiTokens: CONFIGURED, leaseMs: 4_000, heartbeatIntervalMs: 500, maxRequestBytes: MAX_REQUEST_BYTES },
    interceptors: [bearerToken(TOKENS.admin)],
  });
});
afterAll(async () => {
  await api?.close();
});

async function agentToken(name: string, queue: string): Promise<string> {
  return (await admin().token.createToken({ name, role: Role.AGENT, queues: [queue] })).secret;
}

const agentClient = (token: string) => createClient(AgentService, createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1", interceptors: [bearerToken(token)] }));

/** Registers an agent of queue `queue`, creates one noop task there and takes its start from the stream (acknowledged). */
async function holdOne(name: string, queue: string) {
  const agent = agentClient(await agentToken(name, queue));
  const { agentId } = await agent.register({ name, slots: 1, types: ["noop"] });
  const task = (await api.client.createTask(taskRequest({ type: "noop", queue, parameters: { sleep_ms: 60_000 } }))).task!;
  const ac = new AbortController();
  const start = await firstStart(agent, agentId, ac.signal);
  const ref = { taskId: task.id, attempt: start.attempt };
  expect((await agent.heartbeat({ agentId, attempts: [ref] })).owned).toHaveLength(1);
  return { agent, agentId, ref, close: () => ac.abort() };
}

async function historyOf(id: bigint): Promise<string[]> {
  return (await api.client.getTaskHistory({ id })).history.map((h) => h.details);
}

describe("AgentService bad input", () => {
  it("oversized batches are InvalidArgument or ResourceExhausted and write nothing", async () => {
    const { agent, agentId, ref, close } = await holdOne("big-batches", "q-big");
    try {
      const history = await historyOf(ref.taskId);
      const success = { ...ref, kind: AttemptResult_Kind.SUCCEEDED, resultJson: "{}" };
      await expectConnectError(agent.reportOutcomes({ agentId, results: Array(MAX_AGENT_BATCH + 1).fill(success) }), Code.InvalidArgument, /results/);
      const line = { stream: "stdout", line: "x" };
      await expectConnectError(
        agent.appendLogs({ agentId, batches: Array(MAX_AGENT_BATCH + 1).fill({ ...ref, firstLine: 0n, lines: [line] }) }),
        Code.InvalidArgument,
        /batches/,
      );
      await expectConnectError(
        agent.appendLogs({ agentId, batches: [{ ...ref, firstLine: 0n, lines: Array(MAX_LOG_LINES_PER_BATCH + 1).fill(line) }] }),
        Code.InvalidArgument,
        /lines/,
      );
      // Past the server's request size (TASK_MAX_REQUEST_BYTES): refused before it is decoded.
      await expectConnectError(
        agent.appendLogs({ agentId, batches: [{ ...ref, firstLine: 0n, lines: [{ stream: "stdout", line: "y".repeat(MAX_REQUEST_BYTES) }] }] }),
        Code.ResourceExhausted,
      );
      // Nothing was written: no line, no outcome, no history row; the attempt is still the agent's.
      expect((await api.client.getTaskLogs({ id: ref.taskId })).lines).toEqual([]);
      expect(await historyOf(ref.taskId)).toEqual(history);
      expect((await api.client.getTask({ id: ref.taskId })).task!.status).toBe(TaskStatus.RUNNING);
      expect((await agent.heartbeat({ agentId, attempts: [ref] })).owned).toHaveLength(1);
    } finally {
      close();
    }
  }, 60_000);

  it("an outcome or log batch for an attempt another agent holds is refused with the reason, and writes nothing", async () => {
    const owner = await holdOne("owner", "q-owned");
    const other = agentClient(await agentToken("other", "q-owned"));
    const { agentId: otherId } = await other.register({ name: "other", slots: 1, types: ["noop"] });
    try {
      const history = await historyOf(owner.ref.taskId);
      const answer = await other.reportOutcomes({ agentId: otherId, results: [{ ...owner.ref, kind: AttemptResult_Kind.SUCCEEDED, resultJson: "{}" }] });
      expect(answer.recorded).toEqual([false]);
      expect(answer.reasons[0]).toMatch(/no longer this agent's/);
      const logs = await other.appendLogs({ agentId: otherId, batches: [{ ...owner.ref, firstLine: 0n, lines: [{ stream: "stdout", line: "not mine" }] }] });
      expect(logs.stored).toEqual([false]);
      // An attempt that never was (a later one) is refused too.
      const later = await owner.agent.reportOutcomes({ agentId: owner.agentId, results: [{ ...owner.ref, attempt: owner.ref.attempt + 1, kind: AttemptResult_Kind.FAILED, error: "x" }] });
      expect(later.recorded).toEqual([false]);
      expect(later.reasons[0]).toMatch(/is over|no longer/);
      expect((await api.client.getTaskLogs({ id: owner.ref.taskId })).lines).toEqual([]);
      expect(await historyOf(owner.ref.taskId)).toEqual(history);
      expect((await api.client.getTask({ id: owner.ref.taskId })).task!.status).toBe(TaskStatus.RUNNING);
    } finally {
      owner.close();
    }
  }, 60_000);

  it("a stream opened and never read: its starts are taken back and run by a reading agent, once each; the server stays responsive", async () => {
    const token = await agentToken("mute-reader", "q-mute");
    const mute = agentClient(token);
    const { agentId } = await mute.register({ name: "mute", slots: 4, types: ["noop"] });
    // The agent heartbeats (it looks alive, so it is given work) but never names a start, and its
    // Connect server stream over HTTP/1.1 is never read.
    const beats = setInterval(() => void mute.heartbeat({ agentId, attempts: [] }).catch(() => undefined), 300);
    const body = Buffer.from(JSON.stringify({ agentId }));
    const envelope = Buffer.alloc(5 + body.length);
    envelope.writeUInt32BE(body.length, 1);
    body.copy(envelope, 5);
    const url = new URL("/task.v1.AgentService/Assignments", api.server.url);
    const req = http.request(url, {
      method: "POST",
      headers: { "content-type": "application/connect+json", "connect-protocol-version": "1", authorization: `Bearer ${token}` },
    });
    let response: http.IncomingMessage | undefined;
    req.on("response", (res) => {
      response = res;
      res.pause();
    });
    req.on("error", () => undefined);
    req.end(envelope);

    const tasks = (await api.client.createTasks({ tasks: Array.from({ length: 8 }, (_, i) => taskRequest({ name: `mute-${i}`, type: "noop", queue: "q-mute" })) })).tasks;
    // The server went on answering while the stream sat unread.
    await waitFor(async () => {
      const { rows } = await api.database.db.pool.query("select count(*)::int as n from tasks where queue = 'q-mute' and worker_id = $1", [agentId]);
      return rows[0].n > 0;
    }, "starts to be sent to the mute agent");
    // It stops beating: no more work for it, and what it was sent comes back.
    clearInterval(beats);
    // The stream's headers go with its first start, which may reach us a moment after the claim commits.
    await waitFor(() => response !== undefined, "the stream's response headers");
    expect(response?.statusCode).toBe(200);
    const t0 = Date.now();
    await api.client.getTask({ id: tasks[0]!.id });
    const ready = await fetch(new URL("/readyz", api.server.url));
    expect(ready.status).toBe(200);
    expect(Date.now() - t0).toBeLessThan(5_000);

    const unused = definePlugin({ name: "reader_only", description: "Never created here", parameters: z.object({}), run: async () => ({}) });
    const reader = startAgent({ server: api.server.url, token, name: "reader", slots: 4, plugins: [unused], builtins: ["noop"], logLevel: "warn", spoolDir: mkdtempSync(path.join(os.tmpdir(), "agent-spool-")) });
    try {
      for (const t of tasks) await waitFor(async () => (await api.client.getTask({ id: t.id })).task?.status === TaskStatus.SUCCEEDED, `${t.name} to succeed`, 60_000);
      const { rows } = await api.database.db.pool.query(
        `select task_id, count(*) filter (where details like '%succeeded%')::int as ok,
                count(*) filter (where details like '%started on ' || $1 || '%')::int as on_mute
         from task_history where task_id = any($2::bigint[]) group by task_id`,
        [agentId, tasks.map((t) => t.id.toString())],
      );
      expect(rows.map((r) => r.ok)).toEqual(tasks.map(() => 1));
      // At least one start went to the mute stream and came back.
      expect(rows.reduce((n, r) => n + r.on_mute, 0)).toBeGreaterThan(0);
    } finally {
      await reader.stop();
      req.destroy();
    }
  }, 120_000);
});
