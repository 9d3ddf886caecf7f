import { listLogLines } from "../src/store/task-logs.js";
import { chmod, mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskStatus, type Task } from "../src/gen/task/v1/task_pb.js";
import type { Workers } from "../src/worker/runner.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { processesMatching, uniqueSleep } from "./helpers/processes.js";
import { waitFor } from "./helpers/wait.js";
import { startTestWorkers } from "./helpers/workers.js";

let api: TestApi;
let workers: Workers;
let smtp: SMTPServer;
const mailbox: string[] = [];

beforeAll(async () => {
  smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    onData(stream, _session, callback) {
      let raw = "";
      stream.on("data", (chunk: Buffer) => (raw += chunk.toString()));
      stream.on("end", () => {
        mailbox.push(raw);
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => smtp.listen(0, "127.0.0.1", resolve));
  const port = (smtp.server.address() as { port: number }).port;
  api = await startTestApi();
  workers = await startTestWorkers(api.database, { smtpUrl: `smtp://127.0.0.1:${port}` });
});

afterAll(async () => {
  await workers?.stop();
  await api?.close();
  await new Promise<void>((resolve) => smtp.close(() => resolve()));
});

const terminal = new Set([TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED]);

async function waitForStatus(id: bigint, status: TaskStatus, timeoutMs = 20_000): Promise<Task> {
  return waitFor(async () => {
    const { task } = await api.client.getTask({ id });
    if (task && terminal.has(task.status) && task.status !== status) {
      throw new Error(`task ${id} ended ${TaskStatus[task.status]}: ${task.lastError}`);
    }
    return task?.status === status ? task : undefined;
  }, `task ${id} to be ${TaskStatus[status]}`, timeoutMs);
}

async function history(id: bigint): Promise<[string, number, string][]> {
  const res = await api.client.getTaskHistory({ id });
  return res.history.map((h) => [TaskStatus[h.status], h.attempt, h.details]);
}

async function logLines(id: bigint): Promise<{ stream: string; line: string }[]> {
  return (await listLogLines(api.database.db.kysely, id.toString(), 0, 10_000)).map(({ stream, line }) => ({ stream, line }));
}

describe("each task type runs to SUCCEEDED", () => {
  it("shell: output captured line by line, exit code in the result", async () => {
    const { task } = await api.client.createTask({ name: "hello", type: "shell", parameters: { command: "echo hello; echo warn >&2" } });
    const done = await waitForStatus(task!.id, TaskStatus.SUCCEEDED);
    expect(done.result).toMatchObject({ exit_code: 0, stdout_lines: 1, stderr_lines: 1 });
    expect(done.attempts).toBe(1);
    expect(done.startedAt).toBeDefined();
    expect(done.finishedAt).toBeDefined();
    expect((await history(task!.id)).map(([s]) => s)).toEqual(["QUEUED", "RUNNING", "SUCCEEDED"]);
    expect(await logLines(task!.id)).toEqual([
      { stream: "stdout", line: "hello" },
      { stream: "stderr", line: "warn" },
    ]);
  });

  it("run_query: row count and rows from the playground target", async () => {
    const { task } = await api.client.createTask({ name: "q", type: "run_query", parameters: { sql: "select g from generate_series(1, 5) g", max_rows: 2 } });
    const done = await waitForStatus(task!.id, TaskStatus.SUCCEEDED);
    expect(done.result).toMatchObject({ target: "playground", row_count: 5, rows: [{ g: 1 }, { g: 2 }], truncated: true });
    expect((await history(task!.id)).map(([s]) => s)).toEqual(["QUEUED", "RUNNING", "SUCCEEDED"]);
  });

  it("send_email: the message arrives at the SMTP server", async () => {
    const subject = `report ${Date.now()}`;
    const { task } = await api.client.createTask({ name: "mail", type: "send_email", parameters: { to: ["ops@example.com"], subject, body: "all good" } });
    const done = await waitForStatus(task!.id, TaskStatus.SUCCEEDED);
    expect(done.result).toMatchObject({ accepted: ["ops@example.com"] });
    const raw = mailbox.find((m) => m.includes(subject));
    expect(raw).toBeDefined();
    expect(raw).toContain("all good");
    expect(raw).toContain(`Message-ID: <task-${task!.id}@task-service>`);
  });

  it("noop", async () => {
    const { task } = await api.client.createTask({ name: "n", type: "noop", parameters: { sleep_ms: 10 } });
    await waitForStatus(task!.id, TaskStatus.SUCCEEDED);
  });
});

describe("failures, retries and timeouts", () => {
  it("a failing command retries with backoff and ends FAILED with every attempt in history", async () => {
    const { task } = await api.client.createTask({ name: "fail", type: "shell", parameters: { command: "echo boom >&2; exit 3" }, maxAttempts: 3 });
    const done = await waitForStatus(task!.id, TaskStatus.FAILED);
    expect(done.attempts).toBe(3);
    expect(done.lastError).toBe("exit code 3: boom");
    const steps = await history(task!.id);
    expect(steps.map(([s, a]) => `${s}:${a}`)).toEqual(["QUEUED:0", "RUNNING:1", "RETRYING:1", "RUNNING:2", "RETRYING:2", "RUNNING:3", "FAILED:3"]);
    expect(steps[2]![2]).toMatch(/^attempt 1 failed: exit code 3: boom; retrying in \d+ms$/);
    expect(steps[6]![2]).toBe("attempt 3 failed: exit code 3: boom; giving up after 3 attempts");
  });

  it("a timeout kills the whole process group", async () => {
    const marker = uniqueSleep();
    const { task } = await api.client.createTask({
      name: "slow",
      type: "shell",
      parameters: { command: `sleep ${marker} & sleep ${uniqueSleep()}` },
      maxAttempts: 1,
      timeout: { seconds: 1n },
    });
    const done = await waitForStatus(task!.id, TaskStatus.FAILED);
    expect(done.lastError).toBe("timed out after 1s");
    await waitFor(() => processesMatching(marker).length === 0, `background sleep ${marker} to be killed`);
  });

  it("invalid parameters never reach a plugin: FAILED permanently on the first attempt", async () => {
    // Bypass the API's validation, as a row written by an older version might.
    const { rows } = await api.database.db.pool.query(
      `insert into tasks (name, type, parameters, max_attempts, timeout_ms) values ('bad', 'shell', '{"cmd": "touch /tmp/should-not-exist"}', 3, 1000) returning id`,
    );
    const id = rows[0].id as string;
    await api.database.db.pool.query(`select graphile_worker.add_job('run:default:shell', json_build_object('taskId', $1::text, 'attempt', 1), job_key => 'task:' || $1)`, [id]);
    const done = await waitForStatus(BigInt(id), TaskStatus.FAILED);
    expect(done.attempts).toBe(1);
    expect(done.lastError).toMatch(/parameters\.command: is required/);
  });

  it("a manual retry of a FAILED task runs it again", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "retry-"));
    await chmod(dir, 0o755); // shell commands run as nobody here (the tests run as root)
    const marker = path.join(dir, "ready");
    const { task } = await api.client.createTask({ name: "retry-me", type: "shell", parameters: { command: `test -f ${marker}` }, maxAttempts: 1 });
    await waitForStatus(task!.id, TaskStatus.FAILED);
    await writeFile(marker, "");
    const retried = await api.client.retryTask({ id: task!.id });
    expect(retried.task?.attempts).toBe(0);
    const done = await waitForStatus(task!.id, TaskStatus.SUCCEEDED);
    expect(done.attempts).toBe(1);
    expect((await history(task!.id)).map(([s, a]) => `${s}:${a}`)).toEqual(["QUEUED:0", "RUNNING:1", "FAILED:1", "QUEUED:0", "RUNNING:1", "SUCCEEDED:1"]);
  });

  it("a stale or duplicate job for a finished attempt does nothing", async () => {
    const { task } = await api.client.createTask({ name: "once", type: "noop" });
    await waitForStatus(task!.id, TaskStatus.SUCCEEDED);
    const before = await history(task!.id);
    const { rows } = await api.database.db.pool.query(
      `select id from graphile_worker.add_job('run:default:noop', json_build_object('taskId', $1::text, 'attempt', 1))`,
      [task!.id.toString()],
    );
    await waitFor(async () => {
      const left = await api.database.db.pool.query("select 1 from graphile_worker.jobs where id = $1", [rows[0].id]);
      return left.rowCount === 0;
    }, "the duplicate job to be processed");
    expect(await history(task!.id)).toEqual(before);
  });
});

describe("cancellation", () => {
  it("cancels a running shell task: the process group is killed and the task ends CANCELLED", async () => {
    const marker = uniqueSleep();
    const { task } = await api.client.createTask({ name: "long", type: "shell", parameters: { command: `sleep ${marker}` } });
    await waitForStatus(task!.id, TaskStatus.RUNNING);
    await waitFor(() => processesMatching(marker).length > 0, "the command to start");
    const res = await api.client.cancelTask({ id: task!.id, reason: "changed my mind" });
    expect(res.task?.status).toBe(TaskStatus.RUNNING);
    const done = await waitForStatus(task!.id, TaskStatus.CANCELLED);
    expect(done.finishedAt).toBeDefined();
    expect((await history(task!.id)).at(-1)).toEqual(["CANCELLED", 1, "attempt 1 cancelled by request while running: changed my mind"]);
    await waitFor(() => processesMatching(marker).length === 0, `sleep ${marker} to be killed`);
    await expect(api.client.cancelTask({ id: task!.id })).rejects.toMatchObject({ code: 9 /* FailedPrecondition */ });
  });
});
