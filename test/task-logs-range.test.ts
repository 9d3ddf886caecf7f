import { readFileSync } from "node:fs";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { durationFromMs } from "../src/api/convert.js";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { startTestApiWithWorkers, type TestApiWithWorkers } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";
import { createTask } from "./helpers/factory.js";
import { spawnCli } from "./helpers/process.js";
import { waitFor } from "./helpers/wait.js";
import { startTestWorkers } from "./helpers/workers.js";

let api: TestApiWithWorkers;
beforeAll(async () => {
  api = await startTestApiWithWorkers();
});
afterAll(() => api?.close());

async function finished(id: bigint, timeoutMs = 120_000) {
  return waitFor(
    async () => {
      const { task } = await api.client.getTask({ id });
      return task && [TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED].includes(task.status) && task;
    },
    `task ${id} to finish`,
    timeoutMs,
  );
}

async function code(call: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await call;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

describe("a task printing 1,000,000 numbered lines", () => {
  let id: bigint;
  beforeAll(async () => {
    id = (await createTask(api.client, { type: "shell", parameters: { command: "seq 1 1000000" } })).id;
    const task = await finished(id);
    expect(task.status).toBe(TaskStatus.SUCCEEDED);
    expect(task.result).toMatchObject({ stdout_lines: 1_000_000 });
  }, 180_000);

  it("keeps its head and tail with one marker, and counts every line", async () => {
    const head = await api.client.getTaskLogs({ id, from: 4_999, to: 5_001 });
    expect(head.lines.map((l) => [l.seq, l.stream, l.line])).toEqual([
      [4_999, "stdout", "4999"],
      [5_000, "stdout", "5000"],
      [5_001, "system", "[output truncated: 990,000 lines dropped (lines 5001-995000); kept the first 5,000 and the last 5,000 lines of attempt 1]"],
    ]);
    expect(head.totalLines).toBe(1_000_000);
    expect(head.storedLines).toBe(10_001);
    const after = await api.client.getTaskLogs({ id, from: 5_002, to: 995_002 });
    expect(after.lines.map((l) => l.line)).toEqual(["995001", "995002"]);
  });

  it("--tail 100 and --from/--to print exactly those lines", async () => {
    const tail = await runCli(["--address", api.server.url, "logs", "--id", String(id), "--tail", "100"]);
    expect(tail.code).toBe(0);
    expect(tail.stdout).toBe(Array.from({ length: 100 }, (_, i) => `${999_901 + i}\n`).join(""));
    const range = await runCli(["--address", api.server.url, "logs", "--id", String(id), "--from", "10", "--to", "20"]);
    expect(range.stdout).toBe(Array.from({ length: 11 }, (_, i) => `${10 + i}\n`).join(""));
    const json = await runCli(["--address", api.server.url, "--output", "json", "logs", "--id", String(id), "--tail", "1"]);
    expect(JSON.parse(json.stdout)).toMatchObject({ seq: 1_000_000, attempt: 1, stream: "stdout", line: "1000000" });
  });

  it("the download returns every stored line in order, as a named attachment", async () => {
    const res = await fetch(`${api.server.url}/tasks/${id}/logs`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    expect(res.headers.get("content-disposition")).toBe(`attachment; filename="task-${id}.log"`);
    const lines = (await res.text()).split("\n");
    expect(lines.pop()).toBe("");
    expect(lines).toHaveLength(10_001);
    expect(lines.slice(0, 5_000)).toEqual(Array.from({ length: 5_000 }, (_, i) => String(i + 1)));
    expect(lines[5_000]).toMatch(/^system: \[output truncated: 990,000 lines dropped/);
    expect(lines.slice(5_001)).toEqual(Array.from({ length: 5_000 }, (_, i) => String(995_001 + i)));
  });
});

describe("bad log requests", () => {
  it("are InvalidArgument or NotFound, never a 500", async () => {
    const { id } = await createTask(api.client);
    const c = api.client;
    expect(await code(c.getTaskLogs({ id, from: 20, to: 10 }))).toBe(Code.InvalidArgument);
    expect(await code(c.getTaskLogs({ id, from: -1 }))).toBe(Code.InvalidArgument);
    expect(await code(c.getTaskLogs({ id, to: 0 }))).toBe(Code.InvalidArgument);
    expect(await code(c.getTaskLogs({ id, tail: 0 }))).toBe(Code.InvalidArgument);
    expect(await code(c.getTaskLogs({ id, tail: -5 }))).toBe(Code.InvalidArgument);
    expect(await code(c.getTaskLogs({ id, tail: 2_000_000_000 }))).toBe(Code.InvalidArgument);
    expect(await code(c.getTaskLogs({ id, tail: 10, from: 1 }))).toBe(Code.InvalidArgument);
    expect(await code(c.getTaskLogs({ id, afterSeq: 5, from: 1 }))).toBe(Code.InvalidArgument);
    expect(await code(c.getTaskLogs({ id, attempt: -1 }))).toBe(Code.InvalidArgument);
    expect(await code(c.getTaskLogs({ id, stream: "stdin" }))).toBe(Code.InvalidArgument);
    expect(await code(c.getTaskLogs({ id, limit: 1_000_000 }))).toBe(Code.InvalidArgument);
    expect(await code(c.getTaskLogs({ id: 987_654_321n, tail: 10 }))).toBe(Code.NotFound);
    // A huge but valid range is simply empty.
    const far = await c.getTaskLogs({ id, from: 2_147_483_000, to: 2_147_483_647 });
    expect(far.lines).toEqual([]);

    const cli = await runCli(["--address", api.server.url, "logs", "--id", String(id), "--from", "9", "--to", "3"]);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toMatch(/--to \(3\) must not be before --from \(9\)/);
    expect((await runCli(["--address", api.server.url, "logs", "--id", String(id), "--tail", "0"])).code).toBe(2);

    const url = api.server.url;
    expect((await fetch(`${url}/tasks/abc/logs`)).status).toBe(400);
    expect((await fetch(`${url}/tasks/${id}/logs?follow=maybe`)).status).toBe(400);
    expect((await fetch(`${url}/tasks/${id}/logs?stream=stdin`)).status).toBe(400);
    expect((await fetch(`${url}/tasks/${id}/logs?attempt=-1`)).status).toBe(400);
    expect((await fetch(`${url}/tasks/987654321/logs`)).status).toBe(404);
    expect((await fetch(`${url}/tasks/${id}/logs`, { method: "POST" })).status).toBe(405);
  });
});

describe("filters", () => {
  it("by attempt and by stream, with counts", async () => {
    const command = 'echo "out $TASK_ATTEMPT"; echo "err $TASK_ATTEMPT" >&2; [ "$TASK_ATTEMPT" = 2 ]';
    const { id } = await createTask(api.client, { type: "shell", parameters: { command }, maxAttempts: 2 });
    expect((await finished(id)).status).toBe(TaskStatus.SUCCEEDED);
    const second = await api.client.getTaskLogs({ id, attempt: 2 });
    expect(second.lines.map((l) => [l.attempt, l.stream, l.line])).toEqual([
      [2, "stdout", "out 2"],
      [2, "stderr", "err 2"],
    ]);
    expect(second.storedLines).toBe(2);
    expect(second.totalLines).toBe(4);
    const errors = await api.client.getTaskLogs({ id, stream: "stderr" });
    expect(errors.lines.map((l) => [l.seq, l.line])).toEqual([
      [2, "err 1"],
      [4, "err 2"],
    ]);
    const lastErr = await api.client.getTaskLogs({ id, stream: "stderr", tail: 1 });
    expect(lastErr.lines.map((l) => l.line)).toEqual(["err 2"]);
  });
});

describe("follow sees every line of a running task in order, across a retry", () => {
  const command = 'for i in 1 2 3 4 5; do echo "a$TASK_ATTEMPT-$i"; sleep 0.2; done; [ "$TASK_ATTEMPT" = 2 ]';
  const expected = [1, 2].flatMap((a) => [1, 2, 3, 4, 5].map((i) => `a${a}-${i}`));

  it("over HTTP (?follow=true), ending when the task does", async () => {
    const { id } = await createTask(api.client, { type: "shell", parameters: { command }, maxAttempts: 2 });
    const res = await fetch(`${api.server.url}/tasks/${id}/logs?follow=true`);
    expect(res.status).toBe(200);
    const body = await res.text();
    expect(body.split("\n").filter(Boolean)).toEqual(expected);
    expect((await api.client.getTask({ id })).task?.status).toBe(TaskStatus.SUCCEEDED);
  });

  it("over the CLI (--follow), exiting with the final status", async () => {
    const { id } = await createTask(api.client, { type: "shell", parameters: { command }, maxAttempts: 2 });
    const cli = spawnCli(["--address", api.server.url, "logs", "--id", String(id), "--follow"], {});
    expect(await waitFor(() => cli.exited, "the CLI to exit", 30_000)).toBe(0);
    expect(cli.output().split("\n").filter(Boolean)).toEqual(expected);

    const failing = await createTask(api.client, { type: "shell", parameters: { command: "echo one; sleep 0.3; echo two; exit 3" }, maxAttempts: 1 });
    const cli2 = spawnCli(["--address", api.server.url, "logs", "--id", String(failing.id), "--follow"], {});
    expect(await waitFor(() => cli2.exited, "the CLI to exit", 30_000)).toBe(1);
    expect(cli2.output()).toMatch(/^one\ntwo\n[\s\S]*FAILED/);
  });
});

describe("capture with backpressure", () => {
  it("`yes | head -c 2G` leaves a worker process's RSS flat and keeps head, marker and tail", async () => {
    const worker = spawnCli(["serve", "-n", "1"], { DATABASE_URL: api.database.url, TASK_ENABLE_SHELL: "true", TASK_POLL_INTERVAL_MS: "100", LOG_LEVEL: "warn" });
    const pid = worker.child.pid!;
    const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
    try {
      // Only the worker process may take it, so its RSS is what is measured.
      await api.workers.stop();
      const { id } = await createTask(api.client, { type: "shell", parameters: { command: "yes | head -c 2G" }, timeout: durationFromMs(600_000) });
      const samples: number[] = [];
      await waitFor(async () => (await api.client.getTask({ id })).task?.status === TaskStatus.RUNNING, "the task to start", 30_000);
      const baseline = rss();
      for (;;) {
        samples.push(rss());
        const { task } = await api.client.getTask({ id });
        if (task?.status !== TaskStatus.RUNNING) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      const task = await finished(id);
      expect(task.status).toBe(TaskStatus.SUCCEEDED);
      expect(task.result).toMatchObject({ stdout_lines: 1024 ** 3 });
      const peak = Math.max(...samples);
      console.log(`yes | head -c 2G: worker RSS baseline ${baseline.toFixed(0)} MB, peak ${peak.toFixed(0)} MB over ${samples.length} samples`);
      expect(samples.length).toBeGreaterThan(2);
      // Bounded: the 2 GiB never sits in memory (a buffering reader grows by hundreds of MB).
      expect(peak - baseline).toBeLessThan(150);
      const tail = await api.client.getTaskLogs({ id, tail: 2 });
      expect(tail.totalLines).toBe(1024 ** 3);
      expect(tail.lines.map((l) => l.line)).toEqual(["y", "y"]);
      const marker = await api.client.getTaskLogs({ id, from: 5_001, to: 5_001 });
      expect(marker.lines[0]?.line).toMatch(/^\[output truncated: 1,073,731,824 lines dropped/);
    } finally {
      worker.child.kill("SIGTERM");
      await worker.exited;
      api.workers = await startTestWorkers(api.database);
    }
  }, 300_000);
});
