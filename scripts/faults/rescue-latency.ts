/**
 * Rescue latency: how long after a worker process is killed (kill -9) the next attempt of the task
 * it was running starts on another worker. Used by test/faults and by `npm run bench`.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Client } from "@connectrpc/connect";
import type pg from "pg";
import type { TaskService } from "../../src/gen/task/v1/task_pb.js";

/** A worker process the measurement may kill. */
export interface KillableWorker {
  child: { pid?: number; kill(signal: NodeJS.Signals): boolean };
  exited: Promise<unknown>;
}

/** What measureRescueLatency needs. */
export interface RescueLatencyOptions {
  pool: pg.Pool;
  client: Client<typeof TaskService>;
  trials: number;
  /** Live worker processes (at least two); each trial kills one and starts a replacement. */
  workers: KillableWorker[];
  /** Starts a worker process and resolves once it is registered. */
  startWorker(): Promise<KillableWorker>;
}

/** Per-trial latencies in ms, and "min X ms, median Y ms, max Z ms". */
export interface RescueLatency {
  trials: number[];
  summary: string;
}

async function poll<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Runs the trials one after another; the latency is measured on the database's clock. */
export async function measureRescueLatency(o: RescueLatencyOptions): Promise<RescueLatency> {
  const workers = [...o.workers];
  const latencies: number[] = [];
  const settling: number[] = [];
  for (let i = 0; i < o.trials; i++) {
    const { task } = await o.client.createTask({ name: `rescue-${i}`, type: "noop", parameters: { sleep_ms: 600_000 }, maxAttempts: 3 });
    const id = String(task!.id);
    const pid = await poll(async () => {
      const { rows } = await o.pool.query("select worker_id from tasks where id = $1 and status = 'running'", [id]);
      return rows[0] ? Number(String(rows[0].worker_id).split("-").at(-2)) : undefined;
    }, "the task to start");
    const victim = workers.find((w) => w.child.pid === pid);
    if (!victim) throw new Error(`the task runs on pid ${pid}, which is not one of ours`);
    const { rows } = await o.pool.query<{ t: Date }>("select clock_timestamp() as t");
    victim.child.kill("SIGKILL");
    const killedAt = rows[0]!.t.getTime();
    const restartedAt = await poll(async () => {
      const r = await o.pool.query<{ t: Date }>("select created_at as t from task_history where task_id = $1 and status = 'running' and attempt = 2", [id]);
      return r.rows[0]?.t.getTime();
    }, "the next attempt to start");
    latencies.push(restartedAt - killedAt);
    const settled = await o.pool.query<{ t: Date }>("select created_at as t from task_history where task_id = $1 and status = 'retrying' and attempt = 1", [id]);
    settling.push((settled.rows[0]?.t.getTime() ?? restartedAt) - killedAt);
    await victim.exited;
    workers.splice(workers.indexOf(victim), 1);
    await o.client.cancelTask({ id: task!.id, reason: "rescue latency trial done" });
    workers.push(await o.startWorker());
  }
  const sorted = [...latencies].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  const settledSorted = [...settling].sort((a, b) => a - b);
  return {
    trials: latencies,
    summary: `min ${sorted[0]} ms, median ${median} ms, max ${sorted.at(-1)} ms (of which the reconciler took median ${settledSorted[Math.floor(settledSorted.length / 2)]} ms, max ${settledSorted.at(-1)} ms)`,
  };
}
