import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { waitFor } from "./helpers/wait.js";
import { startTestWorkers } from "./helpers/workers.js";

let api: TestApi;
let dir: string;
beforeAll(async () => {
  api = await startTestApi();
  dir = await mkdtemp(path.join(os.tmpdir(), "task-spool-"));
});
afterAll(async () => {
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("outcome spool", () => {
  it("a worker started on the machine delivers the outcome a previous worker spooled, once", async () => {
    const { task } = await api.client.createTask({ name: "spooled", type: "noop", runAt: { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600) } });
    const id = task!.id.toString();
    // The state a worker leaves when it finished attempt 1 while the database was away, then died:
    // the task RUNNING under its id, the outcome in its spool.
    await api.database.db.pool.query("update tasks set status = 'running', attempts = 1, worker_id = 'gone-1-abc', heartbeat_at = now() where id = $1", [id]);
    await api.database.db.pool.query("select graphile_worker.remove_job($1)", [`task:${id}`]);
    const outcome = { kind: "succeeded", result: { from: "the spool" }, details: "attempt 1 succeeded" };
    await writeFile(path.join(dir, `task-${id}-attempt-1.json`), JSON.stringify({ taskId: id, attempt: 1, workerId: "gone-1-abc", outcome }), { mode: 0o600 });

    const workers = await startTestWorkers(api.database, { spoolDir: dir });
    try {
      const done = await waitFor(async () => {
        const { task: t } = await api.client.getTask({ id: task!.id });
        return t?.status === TaskStatus.SUCCEEDED ? t : undefined;
      }, "the spooled outcome to be recorded");
      expect(done.result).toEqual({ from: "the spool" });
      expect(await readdir(dir)).toEqual([]);
    } finally {
      await workers.stop();
    }
  });

  it("a running worker delivers a dead neighbour's spooled outcome within seconds, and leaves a live one's alone", async () => {
    const { holdWorkerLock } = await import("../src/store/worker-liveness.js");
    const later = { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600) };
    const [dead, live] = await Promise.all([
      api.client.createTask({ name: "spooled-dead", type: "noop", runAt: later }),
      api.client.createTask({ name: "spooled-live", type: "noop", runAt: later }),
    ]);
    const deadId = dead.task!.id.toString();
    const liveId = live.task!.id.toString();
    const shared = path.join(dir, "shared");
    await mkdir(shared, { recursive: true, mode: 0o700 });
    const workers = await startTestWorkers(api.database, { spoolDir: shared });
    // A neighbour that is alive (it holds its liveness lock) and is retrying its own outcome.
    const neighbour = holdWorkerLock(api.database.url, "alive-1-abc", api.database.logger, () => undefined);
    try {
      await neighbour.ready;
      for (const [id, worker] of [[deadId, "gone-2-abc"], [liveId, "alive-1-abc"]] as const) {
        await api.database.db.pool.query("update tasks set status = 'running', attempts = 1, worker_id = $2, heartbeat_at = now() where id = $1", [id, worker]);
        await api.database.db.pool.query("select graphile_worker.remove_job($1)", [`task:${id}`]);
        const outcome = { kind: "succeeded", result: { from: worker }, details: "attempt 1 succeeded" };
        await writeFile(path.join(shared, `task-${id}-attempt-1.json`), JSON.stringify({ taskId: id, attempt: 1, workerId: worker, outcome }), { mode: 0o600 });
      }
      const done = await waitFor(async () => {
        const { task: t } = await api.client.getTask({ id: dead.task!.id });
        return t?.status === TaskStatus.SUCCEEDED ? t : undefined;
      }, "the dead worker's spooled outcome to be recorded");
      expect(done.result).toEqual({ from: "gone-2-abc" });
      // The delivered file goes once its outcome is recorded (just after: wait for it).
      await waitFor(async () => !(await readdir(shared)).includes(`task-${deadId}-attempt-1.json`), "the delivered file to be removed", 10_000);
      // The live neighbour's file and task are untouched: it delivers its own outcome.
      expect(await readdir(shared)).toEqual([`task-${liveId}-attempt-1.json`]);
      expect((await api.client.getTask({ id: live.task!.id })).task?.status).toBe(TaskStatus.RUNNING);
    } finally {
      await neighbour.close();
      await workers.stop();
    }
  });

  it("keeps spool files private", async () => {
    const { OutcomeSpool } = await import("../src/worker/outcome-spool.js");
    const spoolDir = path.join(dir, "private");
    const spool = new OutcomeSpool(spoolDir, api.database.logger);
    await spool.save({ taskId: "1", attempt: 1, workerId: "w", outcome: { kind: "failed", error: "x", details: "d" } });
    expect((await stat(spoolDir)).mode & 0o777).toBe(0o700);
    expect((await stat(path.join(spoolDir, "task-1-attempt-1.json"))).mode & 0o777).toBe(0o600);
    expect(await spool.load()).toEqual([{ taskId: "1", attempt: 1, workerId: "w", outcome: { kind: "failed", error: "x", details: "d" } }]);
  });
});
