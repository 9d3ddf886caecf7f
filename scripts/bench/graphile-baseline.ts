/**
 * The baseline: bare graphile-worker on the same PostgreSQL, a handler that does nothing. Default
 * options, or batched (a local queue of `concurrency` jobs, job completions batched over 1 ms).
 * Drain: N jobs added in bulk first, then the runner started; add → start latency: one job at a
 * time added with graphile_worker.add_job, timed to the handler's start.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { run } from "graphile-worker";
import type { Logger } from "../../src/logger.js";
import { graphileLogger } from "../../src/worker/graphile-logger.js";
import type { Db } from "../../src/store/db.js";
import { percentiles, type Percentiles } from "./stats.js";

/** One baseline's figures. */
export interface GraphileFigures {
  drainPerSec: number;
  addToStartMs: Percentiles;
}

/** graphile-worker's batching options, as its performance docs suggest them. */
function presetFor(batched: boolean, concurrency: number) {
  return batched ? { worker: { localQueue: { size: concurrency }, completeJobBatchDelay: 1, failJobBatchDelay: 1 } } : { worker: { localQueue: { size: -1 } } };
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
  let started: (() => void) | undefined;
  const runner = await run({
    connectionString: url,
    concurrency: o.concurrency,
    noHandleSignals: true,
    pollInterval: 2000,
    // Quiet, like ours: graphile-worker's default logger prints a line per job, and without cron
    // items given it looks for a ./crontab file and warns that there is none.
    logger: graphileLogger(o.logger),
    parsedCronItems: [],
    preset: presetFor(o.batched, o.concurrency),
    taskList: {
      [identifier]: async () => {
        started?.();
        done++;
      },
    },
  });
  const t0 = performance.now();
  while (done < o.n) await sleep(5);
  const drainPerSec = o.n / ((performance.now() - t0) / 1000);
  const latencies: number[] = [];
  for (let i = 0; i < o.latencySamples; i++) {
    const start = new Promise<void>((resolve) => (started = resolve));
    const sent = performance.now();
    await db.pool.query("select graphile_worker.add_job($1, '{}'::json)", [identifier]);
    await start;
    latencies.push(performance.now() - sent);
    await sleep(5);
  }
  await runner.stop();
  return { drainPerSec, addToStartMs: percentiles(latencies) };
}
