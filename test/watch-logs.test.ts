import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { startTestApiWithWorkers, type TestApiWithWorkers } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";
import { waitFor } from "./helpers/wait.js";

let api: TestApiWithWorkers;
beforeAll(async () => {
  api = await startTestApiWithWorkers();
});
afterAll(() => api?.close());

const cli = (...args: string[]) => runCli(["--address", api.server.url, ...args]);

describe("WatchTask", () => {
  it("streams the task, its history and its output live until it finishes", async () => {
    const { task } = await api.client.createTask({ name: "chatty", type: "shell", parameters: { command: "echo one; sleep 0.5; echo two >&2; sleep 0.5; echo three" } });
    const events: string[] = [];
    const watchers = async () =>
      (await api.database.db.pool.query("select count(*)::int as n from task_watchers where task_id = $1 and expires_at > now()", [task!.id.toString()])).rows[0].n;
    let registered = 0;
    for await (const res of api.grpc.watchTask({ id: task!.id, includeLogs: true })) {
      // While the stream is open, the server has asked for this task's notifications.
      if (events.length === 0) registered = await watchers();
      const e = res.event;
      if (e.case === "history") events.push(`history:${TaskStatus[e.value.status]}`);
      if (e.case === "log") events.push(`log:${e.value.stream}:${e.value.line}`);
      if (e.case === "task") events.push(`task:${TaskStatus[e.value.status]}`);
    }
    expect(registered).toBe(1);
    expect(await waitFor(async () => (await watchers()) === 0, "the watch registration to be dropped")).toBe(true);
    expect(events.filter((e) => e.startsWith("log:"))).toEqual(["log:stdout:one", "log:stderr:two", "log:stdout:three"]);
    expect(events.filter((e) => e.startsWith("history:"))).toEqual(["history:QUEUED", "history:RUNNING", "history:SUCCEEDED"]);
    expect(events.at(0)).toMatch(/^task:/);
    expect(events.filter((e) => e.startsWith("task:")).at(-1)).toBe("task:SUCCEEDED");
    // Lines arrived in order with the state changes around them.
    expect(events.indexOf("log:stdout:one")).toBeGreaterThan(events.indexOf("history:RUNNING"));
    expect(events.indexOf("log:stdout:three")).toBeLessThan(events.indexOf("history:SUCCEEDED"));
  });

  it("answers NotFound on the stream for an unknown task", async () => {
    const read = async () => {
      for await (const _ of api.client.watchTask({ id: 987_654n })) void _;
    };
    await expect(read()).rejects.toMatchObject({ code: Code.NotFound });
  });
});

describe("GetTaskLogs", () => {
  it("pages through a task's output in order", async () => {
    const { task } = await api.client.createTask({ name: "lines", type: "shell", parameters: { command: "for i in 1 2 3 4 5; do echo line $i; done" } });
    await waitFor(async () => (await api.client.getTask({ id: task!.id })).task?.status === TaskStatus.SUCCEEDED, "the task to finish");
    const first = await api.client.getTaskLogs({ id: task!.id, limit: 2 });
    expect(first.lines.map((l) => l.line)).toEqual(["line 1", "line 2"]);
    expect(first.more).toBe(true);
    const rest = await api.client.getTaskLogs({ id: task!.id, afterSeq: first.lastSeq });
    expect(rest.lines.map((l) => l.line)).toEqual(["line 3", "line 4", "line 5"]);
    expect(rest.more).toBe(false);
    await expect(api.client.getTaskLogs({ id: 987_654n })).rejects.toMatchObject({ code: Code.NotFound });
    await expect(api.client.getTaskLogs({ id: task!.id, limit: 5001 })).rejects.toMatchObject({ code: Code.InvalidArgument });
  });
});

describe("task-cli logs and watch", () => {
  it("prints output, follows a task, and exits by its outcome", async () => {
    const ok = JSON.parse((await cli("task", "create", "w", "--type", "shell", "-p", "command=echo hi; echo oops >&2", "-o", "json")).stdout).task.id as string;
    const watched = await cli("watch", "--id", ok, "--logs");
    expect(watched.code).toBe(0);
    expect(watched.stdout).toMatch(/RUNNING\s+attempt 1 started/);
    expect(watched.stdout).toMatch(/^hi$/m);
    expect(watched.stdout).toMatch(/^stderr: oops$/m);
    expect(watched.stdout).toMatch(/SUCCEEDED\s+attempt 1 succeeded/);

    const logs = await cli("logs", "--id", ok);
    expect(logs.stdout).toBe("hi\nstderr: oops\n");
    const json = (await cli("task", "logs", "--id", ok, "-o", "json")).stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(json.map((l: { stream: string; line: string }) => `${l.stream}:${l.line}`)).toEqual(["stdout:hi", "stderr:oops"]);

    const bad = JSON.parse((await cli("task", "create", "w2", "--type", "shell", "-p", "command=echo bye; exit 4", "--max-attempts", "1", "-o", "json")).stdout).task.id as string;
    const followed = await cli("logs", "--id", bad, "--follow");
    expect(followed.stdout).toBe("bye\n");
    expect(followed.code).toBe(1);
    expect(followed.stderr).toMatch(/FAILED: exit code 4/);
  });
});
