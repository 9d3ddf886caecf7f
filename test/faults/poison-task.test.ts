import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskStatus } from "../../src/gen/task/v1/task_pb.js";
import { startTestApi, type TestApi } from "../helpers/api.js";
import { faultWorkerEnv } from "../helpers/fault-workers.js";
import { waitFor } from "../helpers/wait.js";

const hogWorker = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../helpers/memory-hog-worker.ts");
let api: TestApi;
let current: ChildProcess | undefined;
let stopped = false;
const exits: string[] = [];

beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => {
  stopped = true;
  current?.kill("SIGKILL");
  await api?.close();
});

/** A heap-limited worker, restarted whenever it dies (as a container orchestrator would). */
function superviseHogWorker(): void {
  if (stopped) return;
  const child = spawn(process.execPath, ["--max-old-space-size=96", "--import", "tsx", hogWorker], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: api.database.url, ...faultWorkerEnv, LOG_LEVEL: "error" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  // V8's out-of-memory line is followed by a native stack trace that can be longer than any tail
  // kept here: the line is looked for as the output arrives (across chunk boundaries), not at exit.
  let err = "";
  let outOfMemory = false;
  child.stderr!.on("data", (c: Buffer) => {
    err = (err + c.toString()).slice(-2000);
    outOfMemory ||= /heap out of memory|Reached heap limit/i.test(err);
  });
  current = child;
  child.once("exit", (code, signal) => {
    if (stopped) return;
    exits.push(`${code ?? signal}: ${outOfMemory ? "out of memory" : err.slice(-300)}`);
    superviseHogWorker();
  });
}

describe("poison tasks", () => {
  it("a task that kills its worker by exhausting memory fails after its attempts, saying so; tasks beside it are retried", async () => {
    superviseHogWorker();
    const { tasks: victims } = await api.client.createTasks({
      // Long enough to be running when the hog's worker dies, however long the heap takes to run
      // out under load (V8 collects again and again near its limit): 2 s was not, once.
      tasks: [1, 2].map((i) => ({ name: `beside-${i}`, type: "noop", parameters: { sleep_ms: 20_000 }, maxAttempts: 5 })),
    });
    await waitFor(async () => {
      const { rows } = await api.database.db.pool.query("select count(*)::int as n from tasks where name like 'beside-%' and status = 'running'");
      return rows[0].n === 2;
    }, "the tasks beside it to run", 60_000);
    // memory_hog is a test-only type the API does not know: insert it the way the API would.
    const { rows } = await api.database.db.pool.query(
      `insert into tasks (name, type, parameters, max_attempts, timeout_ms) values ('hog', 'memory_hog', '{}', 3, 120000) returning id`,
    );
    const hog = BigInt(rows[0].id);
    await api.database.db.pool.query(
      `with h as (insert into task_history (task_id, status, attempt, details) values ($1, 'queued', 0, 'created'))
       select graphile_worker.add_job('run:default:memory_hog', json_build_object('taskId', $1::text, 'attempt', 1), job_key => 'task:' || $1)`,
      [String(hog)],
    );

    const done = await waitFor(async () => {
      const { task } = await api.client.getTask({ id: hog });
      return task?.status === TaskStatus.FAILED ? task : undefined;
    }, "the poison task to fail", 150_000);
    expect(done.attempts).toBe(3);
    expect(done.lastError).toBe("worker lost on each of 3 attempts; possibly out of memory");
    // The database can see the third worker gone (its liveness lock released) before this process
    // hears the child's exit: wait for the exit, then look at what each said.
    await waitFor(() => exits.length >= 3, "the third worker exit to be reported", 10_000);
    expect(exits.filter((e) => e.includes("out of memory")).length, exits.join("\n")).toBeGreaterThanOrEqual(3);
    const { history } = await api.client.getTaskHistory({ id: hog });
    expect(history.at(-1)?.details).toMatch(/^attempt 3 lost: worker \S+ exited; giving up: worker lost on each of 3 attempts; possibly out of memory$/);

    // The tasks that shared its worker lost attempts too, and were retried rather than failed.
    for (const v of victims) {
      await waitFor(async () => (await api.client.getTask({ id: v.id })).task?.status === TaskStatus.SUCCEEDED, `${v.name} to succeed`, 60_000);
      const h = (await api.client.getTaskHistory({ id: v.id })).history;
      // Lost with its worker: seen exited, or (under load, when the dying worker stalls past its
      // lease first) by the lease; either way retried, not failed.
      expect(h.some((row) => / lost: .+; retrying now$/.test(row.details)), h.map((row) => row.details).join("\n")).toBe(true);
    }
  }, 240_000);
});
