import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueueService } from "../src/gen/task/v1/queue_pb.js";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";
import { PLAYGROUND_DATABASE, urlForDatabase } from "./helpers/database.js";
import { alive, faultWorkerEnv, startWorkerProcess } from "./helpers/fault-workers.js";
import { cliPath, spawnCli, type CliProcess } from "./helpers/process.js";
import { waitFor } from "./helpers/wait.js";

// Real worker processes (task-cli serve) racing for a queue's slots, pausing, and a worker attached
// with the line `task-cli up` prints.
let api: TestApi;
let dir: string;
const started: CliProcess[] = [];
const shells: ChildProcess[] = [];
beforeAll(async () => {
  api = await startTestApi();
  dir = await mkdtemp(path.join(os.tmpdir(), "task-queues-"));
});
afterAll(async () => {
  for (const p of started) if (alive(p)) p.child.kill("SIGKILL");
  for (const s of shells) if (s.exitCode === null && s.pid) process.kill(-s.pid, "SIGKILL");
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

const pool = () => api.database.db.pool;
const queues = () => createClient(QueueService, createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1" }));
async function worker(args: string[]): Promise<CliProcess> {
  const w = await startWorkerProcess(pool(), api.database.url, {}, args);
  started.push(w);
  return w;
}
async function stopAll(): Promise<void> {
  await Promise.all(
    started.splice(0).map(async (p) => {
      if (!alive(p)) return;
      p.child.kill("SIGTERM");
      await p.exited;
    }),
  );
}
async function countIn(queue: string, status: string): Promise<number> {
  const { rows } = await pool().query("select count(*)::int as n from tasks where queue = $1 and status = $2", [queue, status]);
  return rows[0].n as number;
}
async function createMany(queue: string, n: number, command: string): Promise<bigint[]> {
  const { tasks } = await api.client.createTasks({ tasks: Array.from({ length: n }, (_, i) => ({ name: `${queue}-${i}`, type: "shell", parameters: { command }, queue })) });
  return tasks.map((t) => t.id);
}

describe("a queue's concurrency limit across worker processes", () => {
  it("a queue limited to 2 never has 3 RUNNING with 3 single-slot worker processes racing", async () => {
    // One slot each: without the SQL guard three would run at once, and reaching 2 needs two processes.
    await queues().updateQueue({ name: "limited", settings: { concurrency: 2 }, updateMask: { paths: ["concurrency"] } });
    await Promise.all([1, 2, 3].map(() => worker(["-n", "1", "--queues", "limited"])));
    // All three registered before the race starts, so the first one up cannot take every attempt.
    await waitFor(
      async () => (await pool().query("select count(*)::int as n from workers where 'limited' = any(queues)")).rows[0].n === 3,
      "the three workers to register",
      60_000,
    );
    const ids = await createMany("limited", 24, "sleep 0.2");
    let max = 0;
    const samples: number[] = [];
    await waitFor(
      async () => {
        const running = await countIn("limited", "running");
        samples.push(running);
        max = Math.max(max, running);
        return (await countIn("limited", "succeeded")) === ids.length;
      },
      "every limited task to succeed",
      120_000,
    );
    expect(samples.length).toBeGreaterThan(20);
    expect(max).toBe(2);
    // The attempts were spread over the processes, not serialised by one of them.
    const { rows: ran } = await pool().query(
      `select count(distinct substring(details from 'started on (.*)$'))::int as n from task_history h join tasks t on t.id = h.task_id
       where t.queue = 'limited' and h.status = 'running'`,
    );
    expect(ran[0].n).toBeGreaterThan(1);
    await stopAll();
  });
});

describe("task-cli queue pause / resume with worker processes", () => {
  it("`queue pause default` stops new starts within a second; running attempts finish; resume restarts them", async () => {
    await Promise.all([1, 2, 3].map(() => worker(["-n", "2"])));
    const ids = await createMany("default", 40, "sleep 0.3");
    await waitFor(async () => (await countIn("default", "succeeded")) >= 4, "some default tasks to finish", 60_000);
    const paused = await runCli(["--address", api.server.url, "queue", "pause", "default"]);
    expect(paused.code, paused.stderr).toBe(0);
    const { rows } = await pool().query("select now() as at");
    const pausedAt = rows[0].at as Date;
    await new Promise((r) => setTimeout(r, 2_000));
    const { rows: late } = await pool().query("select count(*)::int as n from tasks where queue = 'default' and started_at > $1::timestamptz + interval '1 second'", [pausedAt]);
    expect(late[0].n).toBe(0);
    // The attempts that were running when the queue was paused finished.
    expect(await countIn("default", "running")).toBe(0);
    const waiting = await countIn("default", "queued");
    expect(waiting).toBeGreaterThan(0);

    const resumed = await runCli(["--address", api.server.url, "queue", "resume", "default"]);
    expect(resumed.code, resumed.stderr).toBe(0);
    await waitFor(async () => (await countIn("default", "running")) > 0 || (await countIn("default", "queued")) < waiting, "a default task to start after resume", 3_000);
    await waitFor(async () => (await countIn("default", "succeeded")) === ids.length, "every default task to succeed", 120_000);
    await stopAll();
  });
});

describe("the attach line `task-cli up` prints", () => {
  it("starts a worker that runs shell tasks, as the built-in workers do", async () => {
    const up = spawnCli(["up", "--port", "0", "--workers", "0", "--enable-shell", "--data-dir", dir], {
      DATABASE_URL: api.database.url,
      TASK_QUERY_TARGETS: `playground=${urlForDatabase(PLAYGROUND_DATABASE)}`,
      LOG_LEVEL: "warn",
    });
    started.push(up);
    const line = await waitFor(() => /^attach more workers: (.+)$/m.exec(up.output())?.[1], "up to print its attach line", 60_000);
    expect(line).toMatch(/^DATABASE_URL=\S+ /);
    expect(line).toContain("--enable-shell");
    expect(line).toContain(`TASK_OUTBOX_DIR=${dir}/outbox`);
    expect(line).toContain(`TASK_QUERY_TARGETS=playground=${urlForDatabase(PLAYGROUND_DATABASE)}`);

    // Run the line as an operator would paste it: task-cli on the PATH.
    const bin = path.join(dir, "bin");
    await rm(bin, { recursive: true, force: true });
    await mkdir(bin);
    await symlink(cliPath, path.join(bin, "task-cli"));
    const shell = spawn("sh", ["-c", line], {
      detached: true,
      stdio: "ignore",
      env: { ...faultWorkerEnv, TASK_ENABLE_SHELL: "false", PATH: `${bin}:${process.env.PATH}`, HOME: process.env.HOME ?? "/tmp" },
    });
    shells.push(shell);
    const attached = await waitFor(async () => {
      const { rows } = await pool().query("select id, types from workers where 'shell' = any(types)");
      return rows[0] as { id: string; types: string[] } | undefined;
    }, "the attached worker to register with shell enabled", 60_000);
    expect(attached.types).toContain("shell");
    const { task } = await api.client.createTask({ name: "via-attached", type: "shell", parameters: { command: "echo attached" } });
    const done = await waitFor(async () => {
      const t = (await api.client.getTask({ id: task!.id })).task!;
      return t.status === TaskStatus.SUCCEEDED || t.status === TaskStatus.FAILED ? t : undefined;
    }, "the shell task to finish", 60_000);
    expect(done.status).toBe(TaskStatus.SUCCEEDED);
    const history = await api.client.getTaskHistory({ id: task!.id });
    expect(history.history.find((h) => h.status === TaskStatus.RUNNING)?.details).toContain(attached.id);
    process.kill(-shell.pid!, "SIGTERM");
    up.child.kill("SIGTERM");
    await up.exited;
  });
});
