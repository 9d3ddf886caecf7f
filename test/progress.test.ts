import { setTimeout as sleep } from "node:timers/promises";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskChange_Kind, TaskStatus, type Task } from "../src/gen/task/v1/task_pb.js";
import { parseProgressLine } from "../src/plugins/progress-file.js";
import { definePlugin, startWorker, z } from "../src/sdk/index.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";
import { spawnCli } from "./helpers/process.js";
import { waitFor } from "./helpers/wait.js";
import { startTestWorkers } from "./helpers/workers.js";

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
  // Counts every row the workers write to task_progress (an insert or an update each).
  await api.database.db.pool.query(`
    create table progress_writes (task_id bigint not null);
    create function count_progress_write() returns trigger language plpgsql as $$
    begin insert into progress_writes values (new.task_id); return null; end $$;
    create trigger count_progress_writes after insert or update on task_progress for each row execute function count_progress_write();
  `);
});
afterAll(async () => api?.close());

async function writesOf(id: bigint): Promise<number> {
  const { rows } = await api.database.db.pool.query<{ n: string }>("select count(*) as n from progress_writes where task_id = $1", [id.toString()]);
  return Number(rows[0]!.n);
}

describe("$TASK_PROGRESS lines", () => {
  it("are FRACTION [MESSAGE], as 0..1 or a percentage; anything else is ignored", () => {
    expect(parseProgressLine("0.42 4,200 of 10,000 rows")).toEqual({ fraction: 0.42, message: "4,200 of 10,000 rows" });
    expect(parseProgressLine("42% rows")).toEqual({ fraction: 0.42, message: "rows" });
    expect(parseProgressLine("1")).toEqual({ fraction: 1, message: "" });
    expect(parseProgressLine("hello 0.5")).toBeUndefined();
    expect(parseProgressLine("")).toBeUndefined();
  });
});

describe("a shell task reports progress through $TASK_PROGRESS", () => {
  it("seen by GetTask and WatchTask while it runs, by WatchTasks and ListTasks, with its output untouched", async () => {
    const worker = spawnCli(["serve", "-n", "2"], { DATABASE_URL: api.database.url, TASK_ENABLE_SHELL: "true", TASK_HEARTBEAT_MS: "200", LOG_LEVEL: "warn" });
    const controller = new AbortController();
    try {
      // WatchTasks from now: it must carry KIND_PROGRESS changes for the task.
      const feed: Task[] = [];
      const following = (async () => {
        for await (const res of api.client.watchTasks({}, { signal: controller.signal })) {
          if (res.event.case === "change" && res.event.value.kind === TaskChange_Kind.PROGRESS) feed.push(res.event.value.task!);
        }
      })().catch(() => undefined);
      const command = [
        "for i in 1 2 3 4 5 6; do",
        '  echo "0.$((i * 15)) step $i of 6" >> "$TASK_PROGRESS"',
        '  echo "out $i"',
        "  sleep 0.5",
        "done",
        'echo "100% all 6 steps" > "$TASK_PROGRESS"',
      ].join("\n");
      const { task } = await api.client.createTask({ name: "steps", type: "shell", parameters: { command } });
      const id = task!.id;
      // WatchTask: the task messages carry the progress as it moves.
      const watched: number[] = [];
      const watching = (async () => {
        for await (const res of api.client.watchTask({ id })) {
          if (res.event.case === "task" && res.event.value.progress) watched.push(res.event.value.progress.fraction);
        }
      })();
      const midway = await waitFor(async () => {
        const t = (await api.client.getTask({ id })).task!;
        return t.status === TaskStatus.RUNNING && t.progress && t.progress.fraction > 0 && t.progress.fraction < 1 ? t : undefined;
      }, "GetTask to show progress while the task runs", 30_000);
      expect(midway.progress!.message).toMatch(/^step \d of 6$/);
      expect(midway.progress!.attempt).toBe(1);
      const listed = (await api.client.listTasks({ ids: [id] })).tasks[0]!;
      expect(listed.progress?.fraction).toBeGreaterThan(0);
      // task-cli task list puts the percentage next to RUNNING.
      const list = await runCli(["--address", api.server.url, "task", "list"]);
      expect(list.stdout).toMatch(new RegExp(`${id}\\s.*RUNNING \\d+%`));
      await watching;
      const done = (await api.client.getTask({ id })).task!;
      expect(done.status).toBe(TaskStatus.SUCCEEDED);
      // The last report lands when the attempt ends, even inside the throttle interval.
      expect(done.progress).toMatchObject({ fraction: 1, message: "all 6 steps", attempt: 1 });
      expect(done.progress!.ratePerSecond).toBeGreaterThan(0);
      expect(watched.length).toBeGreaterThanOrEqual(3);
      expect(watched.at(-1)).toBe(1);
      expect([...watched].sort((a, b) => a - b)).toEqual(watched);
      await waitFor(() => feed.some((t) => t.id === id && t.progress && t.progress.fraction < 1), "WatchTasks to carry a progress change");
      // Progress lines never reach the output.
      const logs = await api.client.getTaskLogs({ id });
      expect(logs.lines.map((l) => l.line)).toEqual(["out 1", "out 2", "out 3", "out 4", "out 5", "out 6"]);
      // 7 reports in about 3 s: throttled to about one write a second, the last one always.
      expect(await writesOf(id)).toBeLessThanOrEqual(6);
      // task-cli: `watch` prints plain lines off a terminal, `task get` shows it.
      const watchOut = await runCli(["--address", api.server.url, "watch", "--id", id.toString()]);
      expect(watchOut.stdout).toMatch(/PROGRESS\s+100% all 6 steps/);
      // On a terminal, a bar (drawn on stderr, so stdout stays the history).
      const watchTty = await runCli(["--address", api.server.url, "watch", "--id", id.toString()], { columns: 100 });
      expect(watchTty.stderr).toMatch(/\u2588{10,} 100% all 6 steps/);
      expect(watchTty.stdout).not.toContain("PROGRESS");
      const getOut = await runCli(["--address", api.server.url, "task", "get", "--id", id.toString()]);
      expect(getOut.stdout).toMatch(/Progress\s+│?\s*100% all 6 steps/);
    } finally {
      controller.abort();
      worker.child.kill("SIGKILL");
    }
  }, 60_000);
});

describe("the $TASK_PROGRESS file is the command's, read with care", () => {
  it("a symlink the command puts in its place, to a file only the worker could read, is not followed", async () => {
    // A secret of the service's user (root in the tests; commands then run as nobody).
    const secrets = await mkdtemp(path.join(os.tmpdir(), "progress-secret-"));
    const secret = path.join(secrets, "secret");
    await writeFile(secret, "0.77 the worker's secret\n", { mode: 0o600 });
    const workers = await startTestWorkers(api.database);
    try {
      const command = `echo "0.25 mine" > "$TASK_PROGRESS"; sleep 1.5; ln -sf ${secret} "$TASK_PROGRESS.link" && mv -f "$TASK_PROGRESS.link" "$TASK_PROGRESS"; sleep 1.5`;
      const { task } = await api.client.createTask({ name: "sneaky", type: "shell", parameters: { command } });
      const done = await waitFor(async () => {
        const t = (await api.client.getTask({ id: task!.id })).task!;
        return t.status === TaskStatus.SUCCEEDED || t.status === TaskStatus.FAILED ? t : undefined;
      }, "the sneaky task to finish");
      expect(done.status, done.lastError).toBe(TaskStatus.SUCCEEDED);
      expect(done.progress).toMatchObject({ fraction: 0.25, message: "mine" });
    } finally {
      await workers.stop();
      await rm(secrets, { recursive: true, force: true });
    }
  }, 30_000);
});

describe("ctx.progress in an SDK plugin", () => {
  it("1,000 reports write only a handful of rows, and the last one lands", async () => {
    const spoolDir = path.join(os.tmpdir(), `progress-test-spool-${api.database.name}`);
    const chatty = definePlugin({
      name: "chatty",
      description: "reports progress 1,000 times",
      parameters: z.object({}),
      async run(_params, ctx) {
        for (let i = 1; i <= 1000; i++) {
          ctx.progress?.(i / 1000, `${i} of 1000`);
          if (i % 100 === 0) await sleep(150);
        }
        return {};
      },
    });
    const worker = await startWorker({
      databaseUrl: api.database.url,
      plugins: [chatty],
      logLevel: "silent",
      env: {},
      spoolDir,
      config: { pollIntervalMs: 100, heartbeatIntervalMs: 200, shutdownGraceMs: 500 },
    });
    try {
      const started = Date.now();
      const { task } = await api.client.createTask({ name: "chatty", type: "chatty" });
      const done = await waitFor(async () => {
        const t = (await api.client.getTask({ id: task!.id })).task!;
        return t.status === TaskStatus.SUCCEEDED ? t : undefined;
      }, "the chatty task to succeed");
      const seconds = (Date.now() - started) / 1000;
      expect(done.progress).toMatchObject({ fraction: 1, message: "1000 of 1000" });
      const writes = await writesOf(task!.id);
      // About 1.5 s of reporting: one write a second (plus the first and the last), never 1,000.
      expect(writes).toBeGreaterThanOrEqual(2);
      expect(writes).toBeLessThanOrEqual(Math.ceil(seconds) + 2);
    } finally {
      await worker.stop();
      await rm(spoolDir, { recursive: true, force: true });
    }
  }, 30_000);
});
