import { chmod, mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskStatus } from "../../src/gen/task/v1/task_pb.js";
import { checkTaskHistory } from "../../scripts/chaos/check-history.js";
import { measureRescueLatency } from "../../scripts/faults/rescue-latency.js";
import { startTestApi, type TestApi } from "../helpers/api.js";
import { alive, ProcessWatch, runningOn, startWorkerProcess } from "../helpers/fault-workers.js";
import type { CliProcess } from "../helpers/process.js";
import { uniqueSleep } from "../helpers/processes.js";
import { waitFor } from "../helpers/wait.js";

// Real worker processes (task-cli serve) on a real PostgreSQL, killed and stopped for real.
let api: TestApi;
let dir: string;
const started: CliProcess[] = [];
beforeAll(async () => {
  api = await startTestApi();
  dir = await mkdtemp(path.join(os.tmpdir(), "task-faults-"));
  await chmod(dir, 0o777); // shell commands run as nobody
});
afterAll(async () => {
  for (const p of started) if (alive(p)) p.child.kill("SIGKILL");
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

const pool = () => api.database.db.pool;
async function worker(env: Record<string, string> = {}, args?: string[]): Promise<CliProcess> {
  const w = await startWorkerProcess(pool(), api.database.url, env, args);
  started.push(w);
  return w;
}
function byPid(pid: number | undefined): CliProcess {
  const w = started.find((p) => p.child.pid === pid);
  if (!w) throw new Error(`no worker with pid ${pid}`);
  return w;
}
async function statusOf(id: bigint) {
  return (await api.client.getTask({ id })).task!;
}
async function audit(id: bigint) {
  const task = await statusOf(id);
  const { history } = await api.client.getTaskHistory({ id });
  return checkTaskHistory({
    id: String(id),
    status: TaskStatus[task.status].toLowerCase(),
    attempts: task.attempts,
    history: history.map((h) => ({ status: TaskStatus[h.status].toLowerCase(), attempt: h.attempt })),
  });
}
/**
 * A shell command that appends "start N" and "end N" (N = attempt) to a file around a marked sleep;
 * attempt 1 may sleep longer than the others.
 */
function markedCommand(file: string, marker: string, firstMarker = marker): string {
  const nap = `if [ "$TASK_ATTEMPT" = 1 ]; then sleep ${firstMarker}; else sleep ${marker}; fi`;
  return `echo "start $TASK_ATTEMPT" >> ${file}; ${nap}; echo "end $TASK_ATTEMPT" >> ${file}`;
}

describe("worker faults", () => {
  it("kill -9 of a worker running a shell command: nothing it started survives, and the retry runs alone", async () => {
    await worker();
    await worker();
    // Attempt 1 sleeps far longer than the rescue takes: had any of its processes outlived the
    // worker, it would still be alive when attempt 2 starts (an overlap) and would write "end 1".
    const marker = uniqueSleep(1);
    const first = uniqueSleep(60);
    const file = path.join(dir, "kill9.log");
    const watch = new ProcessWatch([marker, first]);
    try {
      const { task } = await api.client.createTask({ name: "kill9", type: "shell", parameters: { command: markedCommand(file, marker, first) } });
      const victim = byPid(await waitFor(() => runningOn(pool(), task!.id), "the task to run"));
      await waitFor(() => watch.attempts().some((a) => a.attempt === 1), "attempt 1's command to start");
      victim.child.kill("SIGKILL");
      await victim.exited;
      // PR_SET_PDEATHSIG: the supervisor, and with it the command's PID namespace, dies with the worker.
      await waitFor(() => !watch.anyAlive() || watch.attempts().some((a) => a.attempt === 2), "attempt 1's processes to die", 30_000);
      await waitFor(async () => (await statusOf(task!.id)).status === TaskStatus.SUCCEEDED, "the retry to succeed", 30_000);
      expect(watch.overlaps).toEqual([]);
      const seen = watch.attempts();
      const firstLast = Math.max(...seen.filter((a) => a.attempt === 1).map((a) => a.last));
      const secondFirst = Math.min(...seen.filter((a) => a.attempt === 2).map((a) => a.first));
      expect(firstLast, "attempt 1's command was last seen before attempt 2's started").toBeLessThan(secondFirst);
      expect((await readFile(file, "utf8")).trim().split("\n")).toEqual(["start 1", "start 2", "end 2"]);
      expect(await audit(task!.id)).toEqual([]);
    } finally {
      watch.stop();
    }
  }, 120_000);

  it("rescue after kill -9 is decisive: the next attempt starts on the liveness lock, not after the lease", async () => {
    // A lease of two minutes: a rescue well inside it can only have come from the liveness lock.
    // How fast the lock makes it (the 2 s) is a bench figure: npm run bench, "rescue after kill -9".
    const longLease = { TASK_LEASE_MS: "120000" };
    for (const p of started) if (alive(p)) p.child.kill("SIGKILL");
    const workers = [await worker(longLease), await worker(longLease)];
    const result = await measureRescueLatency({
      pool: pool(),
      client: api.client,
      trials: 5,
      startWorker: () => worker(longLease),
      workers,
    });
    process.stdout.write(`rescue latency over ${result.trials.length} trials: ${result.summary}\n`);
    for (const ms of result.trials) expect(ms).toBeLessThan(60_000);
  }, 240_000);

  it("SIGSTOP past the lease, then SIGCONT: the stopped worker's commands die before the retries start, one outcome each", async () => {
    for (const p of started) if (alive(p)) p.child.kill("SIGKILL");
    const stopped = await worker({}, ["-n", "5"]);
    const marker = uniqueSleep(2);
    const first = uniqueSleep(120);
    const watch = new ProcessWatch([marker, first]);
    try {
      const { tasks } = await api.client.createTasks({
        tasks: [1, 2, 3, 4, 5].map((i) => ({ name: `stopped-${i}`, type: "shell", parameters: { command: markedCommand(path.join(dir, `stop-${i}.log`), marker, first) } })),
      });
      await waitFor(async () => (await Promise.all(tasks.map((t) => runningOn(pool(), t.id)))).every((pid) => pid === stopped.child.pid), "all five to run on one worker");
      await worker(); // the rescuer
      await waitFor(() => watch.attempts().filter((a) => a.attempt === 1).length === 5, "all five commands to start");
      stopped.child.kill("SIGSTOP");
      // Its watchdogs kill the commands before the lease runs out; the rescuer then retries them.
      await waitFor(async () => (await Promise.all(tasks.map((t) => statusOf(t.id)))).every((t) => t.attempts === 2), "the retries to start", 30_000);
      // The stopped worker wakes once the retries have run their commands to the end.
      const ended = async (i: number) => (await readFile(path.join(dir, `stop-${i}.log`), "utf8")).includes("end 2");
      await waitFor(async () => (await Promise.all([1, 2, 3, 4, 5].map(ended))).every(Boolean), "the retries' commands to end", 30_000);
      stopped.child.kill("SIGCONT");
      for (const t of tasks) {
        await waitFor(async () => (await statusOf(t.id)).status === TaskStatus.SUCCEEDED, `task ${t.id} to succeed`, 30_000);
      }
      expect(alive(stopped)).toBe(true);
      expect(watch.overlaps).toEqual([]);
      for (const [i, t] of tasks.entries()) {
        expect(await audit(t.id)).toEqual([]);
        expect((await statusOf(t.id)).attempts).toBe(2);
        // Attempt 1 never finished: it was killed while its worker was stopped, and never resumed.
        expect((await readFile(path.join(dir, `stop-${i + 1}.log`), "utf8")).trim().split("\n")).toEqual(["start 1", "start 2", "end 2"]);
      }
    } finally {
      watch.stop();
    }
  }, 180_000);
});
