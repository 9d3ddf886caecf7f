import { readdirSync, readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkTaskHistory } from "../scripts/chaos/check-history.js";
import { TaskControlService } from "../src/gen/task/v1/control_pb.js";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { durationFromMs } from "../src/api/convert.js";
import type { Workers } from "../src/worker/runner.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { createTask, jobOf, rowCounts, taskRow } from "./helpers/factory.js";
import { waitFor } from "./helpers/wait.js";
import { startTestWorkers } from "./helpers/workers.js";

let api: TestApi;
let workers: Workers;
let control: Client<typeof TaskControlService>;
beforeAll(async () => {
  api = await startTestApi();
  // A short lease (watchdog 1.25s), so a pause of a few seconds outlasts both the shell
  // supervisor's watchdog and the reconciler's lease: neither may take a paused task for lost.
  workers = await startTestWorkers(api.database, { leaseMs: 2_000, heartbeatIntervalMs: 200 });
  control = createClient(TaskControlService, createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1" }));
});
afterAll(async () => {
  await workers?.stop();
  await api?.close();
});

const db = () => api.database.db.kysely;

async function waitForStatus(id: bigint, status: TaskStatus, timeoutMs = 20_000) {
  return waitFor(
    async () => {
      const { task } = await api.client.getTask({ id });
      return task?.status === status && task;
    },
    `task ${id} ${TaskStatus[status]}`,
    timeoutMs,
  );
}

async function logLines(id: bigint): Promise<string[]> {
  const { lines } = await api.client.getTaskLogs({ id, limit: 5000 });
  return lines.filter((l) => l.stream === "stdout").map((l) => l.line);
}

/** Processes of a shell task: those whose environment carries its TASK_ID (the service runs as root). */
function taskProcesses(id: bigint): { pid: number; state: string; cpuTicks: number }[] {
  const found = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const env = readFileSync(`/proc/${entry}/environ`, "utf8").split("\0");
      if (!env.includes(`TASK_ID=${id}`)) continue;
      // Fields after the parenthesised command: state is the 3rd, utime and stime the 14th and 15th.
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      found.push({ pid: Number(entry), state: fields[0]!, cpuTicks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

async function historyOf(id: bigint) {
  const { history } = await api.client.getTaskHistory({ id });
  return history;
}

async function expectLegalHistory(id: bigint) {
  const row = await taskRow(db(), id);
  const history = (await historyOf(id)).map((h) => ({ status: TaskStatus[h.status]!.toLowerCase(), attempt: h.attempt }));
  expect(checkTaskHistory({ id: String(id), status: row.status, attempts: row.attempts, history })).toEqual([]);
}

describe("pause and resume", () => {
  it("pausing a running shell loop freezes its output and CPU time; resume runs it to SUCCEEDED", async () => {
    const task = await createTask(api.client, { type: "shell", parameters: { command: "for i in $(seq 100); do echo $i; sleep 0.1; done" } });
    await waitFor(async () => (await logLines(task.id)).length >= 5, "some output");
    const { task: paused } = await control.pauseTask({ id: task.id });
    expect(paused?.status).toBe(TaskStatus.PAUSED);
    expect(paused?.pausedAt).toBeDefined();
    // The worker hears of it by notification and stops the process group.
    const stopped = await waitFor(() => {
      const procs = taskProcesses(task.id);
      return procs.length > 0 && procs.every((p) => p.state === "T") && procs;
    }, "every process of the task stopped (state T)");
    // Lines printed just before the stop may still be on their way (pipe, batched log writes).
    await sleep(1_000);
    const linesAtPause = (await logLines(task.id)).length;
    const cpuAtPause = taskProcesses(task.id).reduce((n, p) => n + p.cpuTicks, 0);
    // Longer than the lease and the supervisor's watchdog.
    await sleep(3_000);
    const still = taskProcesses(task.id);
    expect(still.map((p) => p.pid).sort()).toEqual(stopped.map((p) => p.pid).sort());
    expect(still.every((p) => p.state === "T")).toBe(true);
    expect(still.reduce((n, p) => n + p.cpuTicks, 0)).toBe(cpuAtPause);
    expect((await logLines(task.id)).length).toBe(linesAtPause);
    expect(linesAtPause).toBeLessThan(100);
    const row = await taskRow(db(), task.id);
    expect(row.status).toBe("paused");
    expect(row.heartbeat_at!.getTime()).toBeGreaterThan(Date.now() - 2_000); // heartbeats went on

    const { task: resumed } = await control.resumeTask({ id: task.id });
    expect(resumed?.status).toBe(TaskStatus.RUNNING);
    const done = await waitForStatus(task.id, TaskStatus.SUCCEEDED);
    expect(done.attempts).toBe(1);
    expect(await logLines(task.id)).toEqual(Array.from({ length: 100 }, (_, i) => String(i + 1)));
    const steps = (await historyOf(task.id)).map((h) => `${TaskStatus[h.status]}:${h.attempt}`);
    expect(steps).toEqual(["QUEUED:0", "RUNNING:1", "PAUSED:1", "RUNNING:1", "SUCCEEDED:1"]);
    await expectLegalHistory(task.id);
  });

  it("the timeout does not run while a task is paused", async () => {
    // 2s of work under a 3s timeout, paused for 2.5s in the middle: done only if the pause stopped the clock.
    const task = await createTask(api.client, {
      type: "shell",
      timeout: durationFromMs(3_000),
      maxAttempts: 1,
      parameters: { command: "for i in 1 2 3 4; do echo $i; sleep 0.5; done" },
    });
    await waitFor(async () => (await logLines(task.id)).length >= 1, "first line");
    await control.pauseTask({ id: task.id });
    await sleep(2_500);
    await control.resumeTask({ id: task.id });
    const done = await waitFor(async () => {
      const row = await taskRow(db(), task.id);
      return ["succeeded", "failed"].includes(row.status) && row;
    }, "task finished");
    expect(done.last_error).toBeNull();
    expect(done.status).toBe("succeeded");
  });

  it("cancelling a paused shell task stops it at once", async () => {
    const task = await createTask(api.client, { type: "shell", parameters: { command: "sleep 30" } });
    await waitForStatus(task.id, TaskStatus.RUNNING);
    await control.pauseTask({ id: task.id });
    await waitFor(() => taskProcesses(task.id).some((p) => p.state === "T"), "stopped");
    await api.client.cancelTask({ id: task.id, reason: "changed my mind" });
    await waitForStatus(task.id, TaskStatus.CANCELLED, 10_000);
    await waitFor(() => taskProcesses(task.id).length === 0, "processes gone");
    await expectLegalHistory(task.id);
  });

  it("a paused waiting task starts no attempt and has no job until resumed", async () => {
    const task = await createTask(api.client, { parameters: {}, runAt: timestampFromDate(new Date(Date.now() + 1_000)) });
    const { task: paused } = await control.pauseTask({ id: task.id });
    expect(paused?.status).toBe(TaskStatus.PAUSED);
    expect(await jobOf(db(), task.id)).toBeUndefined();
    await sleep(2_000); // past its run_at
    const row = await taskRow(db(), task.id);
    expect({ status: row.status, attempts: row.attempts, paused_from: row.paused_from }).toEqual({ status: "paused", attempts: 0, paused_from: "queued" });
    const { task: resumed } = await control.resumeTask({ id: task.id });
    expect(resumed?.status === TaskStatus.QUEUED || resumed?.status === TaskStatus.RUNNING).toBe(true);
    await waitForStatus(task.id, TaskStatus.SUCCEEDED);
    const steps = (await historyOf(task.id)).map((h) => `${TaskStatus[h.status]}:${h.attempt}`);
    expect(steps).toEqual(["QUEUED:0", "PAUSED:0", "QUEUED:0", "RUNNING:1", "SUCCEEDED:1"]);
    await expectLegalHistory(task.id);
  });

  it("refuses what cannot be paused or resumed, with the right code, and changes nothing", async () => {
    const expectCode = async (call: Promise<unknown>, code: Code, message?: RegExp) => {
      const err = await call.then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code, (err as Error).message).toBe(code);
      if (message) expect((err as Error).message).toMatch(message);
    };
    const finished = await createTask(api.client, {});
    await waitForStatus(finished.id, TaskStatus.SUCCEEDED);
    const running = await createTask(api.client, { parameters: { sleep_ms: 30_000 } });
    await waitForStatus(running.id, TaskStatus.RUNNING);
    const before = await rowCounts(db());
    const historyBefore = await historyOf(finished.id);

    await expectCode(control.pauseTask({ id: finished.id }), Code.FailedPrecondition, /it is succeeded/);
    await expectCode(control.resumeTask({ id: finished.id }), Code.FailedPrecondition);
    // noop cannot pause mid-run.
    await expectCode(control.pauseTask({ id: running.id }), Code.FailedPrecondition, /cannot pause mid-run/);
    await expectCode(control.resumeTask({ id: running.id }), Code.FailedPrecondition);
    await expectCode(control.pauseTask({ id: 0n }), Code.InvalidArgument);
    await expectCode(control.resumeTask({ id: -4n }), Code.InvalidArgument);
    await expectCode(control.pauseTask({ id: 987_654_321n }), Code.NotFound);
    await expectCode(control.resumeTask({ id: 987_654_321n }), Code.NotFound);

    const held = await createTask(api.client, { runAt: timestampFromDate(new Date(Date.now() + 3_600_000)) });
    await control.pauseTask({ id: held.id });
    await expectCode(control.pauseTask({ id: held.id }), Code.FailedPrecondition, /it is paused/);

    expect((await rowCounts(db())).tasks).toBe(before.tasks + 1);
    expect(await historyOf(finished.id)).toEqual(historyBefore);
    expect((await taskRow(db(), running.id)).status).toBe("running");
    await api.client.cancelTask({ id: running.id });
    await api.client.cancelTask({ id: held.id });
    await waitForStatus(held.id, TaskStatus.CANCELLED);
  });
});
