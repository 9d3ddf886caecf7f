/**
 * Our side of the benchmark, over the real API (Connect over HTTP/1.1) and a real `serve` process:
 * create rates (single calls at a concurrency, bulk), drain, end to end, and create → RUNNING
 * latency idle and under a steady load, taken from the database's timestamps.
 */
import { execFile } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import type { JsonObject } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import type { TaskService } from "../../src/gen/task/v1/task_pb.js";
import type { Db } from "../../src/store/db.js";
import { cliPath } from "./processes.js";
import { median, percentiles, type Percentiles } from "./stats.js";

type TaskClient = Client<typeof TaskService>;
const execFileAsync = promisify(execFile);

/** The highest task id so far: the tasks of a phase are the ones above it. */
export async function lastTaskId(db: Db): Promise<string> {
  return String((await db.pool.query("select coalesce(max(id), 0) as id from tasks")).rows[0].id);
}

async function unfinished(db: Db): Promise<number> {
  return Number((await db.pool.query("select count(*) as n from tasks where status in ('queued', 'running', 'retrying')")).rows[0].n);
}

/** Waits until no task is waiting or running (every bench task is a no-op that succeeds). */
export async function untilDrained(db: Db, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await unfinished(db)) > 0) {
    if (Date.now() > deadline) throw new Error("timed out waiting for the tasks to finish");
    await sleep(10);
  }
}

/** Single CreateTask calls, `concurrency` in flight at a time; calls per second. */
export async function createSingles(client: Pick<TaskClient, "createTask">, total: number, concurrency: number, prefix: string): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const i = next++;
        await client.createTask({ name: `${prefix}-${i}`, type: "noop" });
      }
    }),
  );
  return total / ((performance.now() - t0) / 1000);
}

/** CreateTasks calls of `batch` tasks (no-ops unless `type` says otherwise) one after another; tasks per second. */
export async function createBulk(client: TaskClient, total: number, batch: number, prefix: string, type: { type: string; parameters?: JsonObject } = { type: "noop" }): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < total; i += batch) {
    const n = Math.min(batch, total - i);
    await client.createTasks({ tasks: Array.from({ length: n }, (_, j) => ({ name: `${prefix}-${i + j}`, ...type })) });
  }
  return total / ((performance.now() - t0) / 1000);
}

/** Tasks per second over the tasks above `afterId`: from the first start to the last finish, on the database's clock. */
export async function drainRate(db: Db, afterId: string): Promise<number> {
  const { rows } = await db.pool.query(
    "select count(*) as n, extract(epoch from max(finished_at) - min(started_at)) as s from tasks where id > $1 and status = 'succeeded'",
    [afterId],
  );
  return Number(rows[0].n) / Number(rows[0].s);
}

/** create → RUNNING (started_at − created_at) of the tasks above `afterId`, in ms. */
export async function startLatencies(db: Db, afterId: string): Promise<Percentiles> {
  const { rows } = await db.pool.query("select extract(epoch from started_at - created_at) * 1000 as ms from tasks where id > $1 and started_at is not null", [afterId]);
  return percentiles(rows.map((r) => Number(r.ms)));
}

/** CreateTasks in batches with the workers running, timed to the last SUCCEEDED; tasks per second. */
export async function endToEnd(db: Db, client: TaskClient, total: number, batch: number): Promise<number> {
  const t0 = performance.now();
  await createBulk(client, total, batch, "e2e");
  await untilDrained(db);
  return total / ((performance.now() - t0) / 1000);
}

/** One CreateTask at a time, each waited for until it has started: create → RUNNING, idle. */
export async function idleLatency(db: Db, client: TaskClient, samples: number): Promise<Percentiles> {
  const afterId = await lastTaskId(db);
  for (let i = 0; i < samples; i++) {
    const { task } = await client.createTask({ name: `idle-${i}`, type: "noop" });
    while ((await db.pool.query("select 1 from tasks where id = $1 and status = 'succeeded'", [String(task!.id)])).rowCount === 0) await sleep(2);
    await sleep(5);
  }
  return startLatencies(db, afterId);
}

/**
 * A steady load: CreateTasks every 10 ms carrying what is due at `perSec`, for `seconds`, then
 * create → RUNNING of those tasks.
 */
export async function steadyLatency(db: Db, client: TaskClient, perSec: number, seconds: number): Promise<Percentiles> {
  const afterId = await lastTaskId(db);
  const t0 = performance.now();
  let sent = 0;
  const calls: Promise<unknown>[] = [];
  while (performance.now() - t0 < seconds * 1000) {
    const due = Math.floor(((performance.now() - t0) / 1000) * perSec) - sent;
    if (due > 0) {
      const first = sent;
      sent += due;
      calls.push(client.createTasks({ tasks: Array.from({ length: due }, (_, j) => ({ name: `steady-${first + j}`, type: "noop" })) }));
    }
    await sleep(10);
  }
  await Promise.all(calls);
  await untilDrained(db);
  return startLatencies(db, afterId);
}

/**
 * `task-cli task get <id>` as an operator runs it, and `node -e 0` alternating with it (what Node
 * alone costs to start on this machine right now): median wall times in seconds.
 */
export async function cliGetSeconds(url: string, id: string, runs: number): Promise<{ cli: number; bareNode: number }> {
  const cli: number[] = [];
  const bareNode: number[] = [];
  const env = { PATH: process.env.PATH, HOME: process.env.HOME };
  for (let i = 0; i < runs; i++) {
    let t0 = performance.now();
    await execFileAsync(process.execPath, [cliPath, "--address", url, "task", "get", "--id", id], { env });
    cli.push((performance.now() - t0) / 1000);
    t0 = performance.now();
    await execFileAsync(process.execPath, ["-e", "0"], { env });
    bareNode.push((performance.now() - t0) / 1000);
  }
  return { cli: median(cli), bareNode: median(bareNode) };
}
