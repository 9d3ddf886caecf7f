/**
 * The baseline: bare graphile-worker on the same PostgreSQL, a handler that does nothing, at the
 * same concurrency as ours. Two modes: its defaults, and batched with the settings of its
 * performance guide (https://worker.graphile.org/docs/performance: `localQueue: { size: 500 }`,
 * `completeJobBatchDelay: 0`, `failJobBatchDelay: 0`, `maxPoolSize` one more than the concurrency).
 * Drain: N jobs added in bulk first, then the runner started; add → start latency: one job at a
 * time added with graphile_worker.add_job, measured the way ours is (create → RUNNING): on the
 * database's clock, from the job's `created_at` (the adding transaction's now()) to its `locked_at`
 * (the fetching statement's now()), as ours runs from the task's `created_at` to the claim's `started_at`.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { run, type Job } from "graphile-worker";
import type { Logger } from "../../src/logger.js";
import { graphileLogger } from "../../src/graphile-logger.js";
import type { Db } from "../../src/store/db.js";
import { percentiles, type Percentiles } from "./stats.js";

/** One baseline's figures. */
export interface GraphileFigures {
  /** The graphile-worker settings this baseline ran with (besides the connection and the task list). */
  settings: Record<string, unknown>;
  drainPerSec: number;
  addToStartMs: Percentiles;
}

/** The local queue of graphile-worker's performance guide ("Quick stats" configuration). */
export const GUIDE_LOCAL_QUEUE_SIZE = 500;

/** graphile-worker's worker settings: its defaults, or its performance guide's batching. */
export function graphileSettings(batched: boolean, concurrency: number): Record<string, unknown> {
  return batched
    ? { concurrentJobs: concurrency, maxPoolSize: concurrency + 1, localQueue: { size: GUIDE_LOCAL_QUEUE_SIZE }, completeJobBatchDelay: 0, failJobBatchDelay: 0 }
    : { concurrentJobs: concurrency };
}

export async function graphileBaseline(db: Db, url: string, o: { n: number; concurrency: number; batched: boolean; latencySamples: number; logger: Logger }): Promise<GraphileFigures> {
  const identifier = o.batched ? "bench_noop_batched" : "bench_noop";
  for (let i = 0; i < o.n; i += 1000) {
    await db.pool.query(
      `select count(*) from graphile_worker.add_jobs(array(select row($2::text, json_build_object('i', g), null, null, 10, null, 0, null)::graphile_worker.job_spec from generate_series(1, $1) g))`,
      [Math.min(1000, o.n - i), identifier],
    );
  }
  let done = 0;
  // In the latency phase, the handler hands its job over and waits until it has been measured (the
  // job row is still there, locked, until the handler returns).
  let started: ((job: Job) => Promise<void>) | undefined;
  const settings = graphileSettings(o.batched, o.concurrency);
  const runner = await run({
    connectionString: url,
    noHandleSignals: true,
    pollInterval: 2000,
    // Quiet, like ours: graphile-worker's default logger prints a line per job, and without cron
    // items given it looks for a ./crontab file and warns that there is none.
    logger: graphileLogger(o.logger),
    parsedCronItems: [],
    preset: { worker: settings },
    taskList: {
      [identifier]: async (_payload, helpers) => {
        await started?.(helpers.job);
        done++;
      },
    },
  });
  const t0 = performance.now();
  while (done < o.n) await sleep(5);
  const drainPerSec = o.n / ((performance.now() - t0) / 1000);
  const latencies: number[] = [];
  for (let i = 0; i < o.latencySamples; i++) {
    let measured!: () => void;
    const start = new Promise<Job>((resolve) => {
      started = (job) => (resolve(job), new Promise<void>((r) => (measured = r)));
    });
    await db.pool.query("select graphile_worker.add_job($1, '{}'::json)", [identifier]);
    const job = await start;
    // In SQL: a JavaScript Date keeps milliseconds, the timestamps have microseconds.
    const { rows } = await db.pool.query("select extract(epoch from locked_at - created_at) * 1000 as ms from graphile_worker._private_jobs where id = $1", [job.id]);
    measured();
    latencies.push(Number(rows[0].ms));
    await sleep(5);
  }
  await runner.stop();
  return { settings, drainPerSec, addToStartMs: percentiles(latencies) };
}
