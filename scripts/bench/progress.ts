/**
 * What progress reporting costs: no-op tasks that report progress 10 times each (ctx.progress, in a
 * tight loop: throttled to one write a second per task from the attempt's start, and the last report
 * written at its end, so such a short attempt writes once) drained against the same no-op tasks
 * without progress, each by a new `serve -n N`, in the same run. A figure, not a target.
 */
import type { Client } from "@connectrpc/connect";
import type { TaskService } from "../../src/gen/task/v1/task_pb.js";
import type { Db } from "../../src/store/db.js";
import { createBulk, drainRate, lastTaskId, untilDrained } from "./ours.js";
import { startServeProcess } from "./processes.js";

/** Rows written to task_progress so far (inserts and updates), from the statistics of ended backends. */
async function progressWrites(db: Db): Promise<number> {
  const { rows } = await db.pool.query("select coalesce(sum(n_tup_ins + n_tup_upd), 0) as n from pg_stat_user_tables where relname = 'task_progress'");
  return Number(rows[0].n);
}

async function drain(db: Db, client: Client<typeof TaskService>, o: ProgressDrainOptions, steps: number, dataDir: string): Promise<number> {
  const afterId = await lastTaskId(db);
  await createBulk(client, o.total, o.batch, steps > 0 ? "progress" : "plain", { type: "noop", parameters: steps > 0 ? { progress_steps: steps } : {} });
  const serve = await startServeProcess(o.databaseUrl, dataDir, o.concurrency, o.registered);
  try {
    await untilDrained(db);
    return await drainRate(db, afterId);
  } finally {
    await serve.stop();
  }
}

/** Options of progressDrain. */
export interface ProgressDrainOptions {
  databaseUrl: string;
  dataDir: string;
  concurrency: number;
  total: number;
  batch: number;
  registered: (pid: number) => Promise<boolean>;
}

/**
 * The two kinds of drain (tasks per second), their ratio, and the progress rows written per task.
 * Run plain, progress, progress, plain (half the tasks each), best of each kind: the machine's load
 * drifts during a run, and the tasks table grows, so neither kind always goes first.
 */
export async function progressDrain(db: Db, client: Client<typeof TaskService>, o: ProgressDrainOptions) {
  const half = { ...o, total: Math.max(1, Math.round(o.total / 2)) };
  const plain: number[] = [];
  const progress: number[] = [];
  let writes = 0;
  for (const [i, steps] of [0, 10, 10, 0].entries()) {
    const before = await progressWrites(db);
    const perSec = await drain(db, client, half, steps, `${o.dataDir}-${i}`);
    (steps > 0 ? progress : plain).push(perSec);
    // The serve process has exited: its backends' statistics are flushed.
    if (steps > 0) {
      await new Promise((resolve) => setTimeout(resolve, 600));
      writes += (await progressWrites(db)) - before;
    }
  }
  const plainPerSec = Math.max(...plain);
  const progressPerSec = Math.max(...progress);
  return { tasks: half.total * 2, steps: 10, plainPerSec, progressPerSec, plainRounds: plain, progressRounds: progress, ratio: progressPerSec / plainPerSec, writesPerTask: writes / (half.total * 2) };
}
