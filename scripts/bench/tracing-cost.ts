/**
 * What tracing costs a drain (issue 28): the same number of pre-created no-op tasks drained by a
 * `serve -n N` of the previous release (the last commit before src/tracing.ts landed, built in a
 * temporary git worktree), of this build with tracing off, and of this build with tracing on
 * (OTLP/HTTP protobuf to a receiver in the bench process, otlp-receiver.ts). Each release has its
 * own database in the bench's cluster, migrated by its own `task-cli migrate`, and creates its tasks
 * with its own create statement. The three drains alternate over rounds (the order reversed each
 * round), so a load that moves during the run hurts each alike; the spread between a variant's
 * rounds is the noise the "tracing off vs previous release" ratio is judged against.
 */
import { execFile } from "node:child_process";
import { realpath, symlink } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { ensureDatabase } from "../../src/embedded-postgres.js";
import type { Logger } from "../../src/logger.js";
import { openDb, type Db } from "../../src/store/db.js";
import { insertTasks, type NewTask } from "../../src/store/tasks.js";
import { drainRate, lastTaskId, untilDrained } from "./ours.js";
import { startOtlpReceiver } from "./otlp-receiver.js";
import { cliPath, repoRoot, startServeProcess } from "./processes.js";

const run = promisify(execFile);

/** The drain rates (tasks/s) of each variant, one per round, and what they come to. */
export type TracingCost =
  | { skipped: string }
  | {
      previousRelease: { commit: string; subject: string };
      tasks: number;
      rounds: number;
      perSec: { previous: number[]; off: number[]; on: number[] };
      /** The best round of each (the bench's habit: a noisy neighbour only ever slows a round down). */
      best: { previous: number; off: number; on: number };
      /** Tracing off / previous release, of the best rounds. */
      offToPrevious: number;
      /** The largest spread between rounds of one variant (max / min − 1): the noise. */
      noise: number;
      withinNoise: boolean;
      /** Tracing on / tracing off, of the best rounds; 1 − this is tracing's cost. */
      onToOff: number;
      /** Spans the receiver counted over the traced drains, and the POSTs that carried them. */
      spans: number;
      posts: number;
    };

/** The last commit before src/tracing.ts was added, or why it cannot be had (no git, a shallow clone). */
export async function previousRelease(): Promise<{ commit: string; subject: string } | { skipped: string }> {
  const git = async (...args: string[]) => (await run("git", args, { cwd: repoRoot })).stdout.trim();
  try {
    const added = (await git("log", "--format=%H", "--diff-filter=A", "--", "src/tracing.ts")).split("\n").at(-1);
    if (!added) return { skipped: "no commit adds src/tracing.ts in this history" };
    const commit = await git("rev-parse", "--verify", "--quiet", `${added}^`).catch(() => "");
    if (!commit) {
      const shallow = (await git("rev-parse", "--is-shallow-repository")) === "true";
      return { skipped: `the oldest commit with src/tracing.ts (${added.slice(0, 7)}) has no parent in this ${shallow ? "shallow clone" : "repository"}` };
    }
    return { commit, subject: await git("log", "-1", "--format=%h %s", commit) };
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    return { skipped: `no git history (${stderr || (err instanceof Error ? err.message.split("\n")[0] : String(err))})` };
  }
}

/** `n` no-op tasks as the create path stores them (the same for both releases' statements). */
function noops(n: number, prefix: string): NewTask[] {
  return Array.from({ length: n }, (_, i) => ({
    name: `${prefix}-${i}`,
    type: "noop",
    parameters: {},
    priority: 0,
    maxAttempts: 3,
    timeoutMs: 30_000,
    runAt: null,
    idempotencyKey: null,
    requestHash: null,
  }));
}

/** A database of the bench's cluster, by name. */
function databaseUrl(clusterUrl: string, name: string): string {
  const url = new URL(clusterUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Whether a worker process (by pid) holds its liveness lock in `db`. */
const registeredIn = (db: Db) => async (pid: number) =>
  (await db.pool.query("select 1 from workers where id like $1 and lock_key is not null", [`%-${pid}-%`])).rowCount === 1;

/**
 * The three drains (see the module comment), `rounds` times each, `n` tasks each. Returns
 * `{ skipped }` without measuring anything when the previous release cannot be checked out.
 */
export async function benchTracingCost(o: { clusterUrl: string; dir: string; n: number; concurrency: number; batch: number; rounds: number; logger: Logger }): Promise<TracingCost> {
  const release = await previousRelease();
  if ("skipped" in release) return release;
  const prevDir = path.join(o.dir, "previous-release");
  await run("git", ["worktree", "add", "--detach", "--quiet", prevDir, release.commit], { cwd: repoRoot });
  const receiver = await startOtlpReceiver();
  const dbs: Db[] = [];
  try {
    await symlink(await realpath(path.join(repoRoot, "node_modules")), path.join(prevDir, "node_modules"));
    await run("npm", ["run", "--silent", "build"], { cwd: prevDir, env: process.env });
    const prevCli = path.join(prevDir, "bin/task-cli.js");
    const variants = {
      previous: { cli: prevCli, database: "bench_previous_release", env: {} as Record<string, string> },
      off: { cli: cliPath, database: "bench_tracing", env: {} },
      on: { cli: cliPath, database: "bench_tracing", env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_SERVICE_NAME: "bench" } },
    };
    const opened = new Map<string, Db>();
    for (const v of Object.values(variants)) {
      if (opened.has(v.database)) continue;
      const url = databaseUrl(o.clusterUrl, v.database);
      await ensureDatabase(o.clusterUrl, v.database);
      // Each release's own migrations, by its own CLI.
      await run(process.execPath, [v.cli, "migrate"], { env: { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: url, LOG_LEVEL: "error" } });
      const db = openDb({ connectionString: url, max: 2 }, o.logger);
      dbs.push(db);
      opened.set(v.database, db);
    }
    // Each release creates its tasks with its own create statement (src/store/tasks.ts of its build).
    const prevTasks = (await import(pathToFileURL(path.join(prevDir, "dist/store/tasks.js")).href)) as { insertTasks: typeof insertTasks };
    const perSec = { previous: [] as number[], off: [] as number[], on: [] as number[] };
    for (let round = 0; round < o.rounds; round++) {
      const order = (["previous", "off", "on"] as const).slice();
      if (round % 2 === 1) order.reverse();
      for (const name of order) {
        const v = variants[name];
        const db = opened.get(v.database)!;
        const create = name === "previous" ? prevTasks.insertTasks : insertTasks;
        const afterId = await lastTaskId(db);
        for (let i = 0; i < o.n; i += o.batch) await create(db, noops(Math.min(o.batch, o.n - i), `${name}-${round}-${i}`));
        const serve = await startServeProcess(databaseUrl(o.clusterUrl, v.database), path.join(o.dir, `serve-${name}-${round}`), o.concurrency, registeredIn(db), v.env, v.cli);
        try {
          await untilDrained(db);
          perSec[name].push(await drainRate(db, afterId));
        } finally {
          // A traced worker exports what it still holds as it stops.
          await serve.stop();
        }
      }
    }
    const m = { previous: Math.max(...perSec.previous), off: Math.max(...perSec.off), on: Math.max(...perSec.on) };
    const spread = (rates: number[]) => Math.max(...rates) / Math.min(...rates) - 1;
    const noise = Math.max(spread(perSec.previous), spread(perSec.off), spread(perSec.on));
    const offToPrevious = m.off / m.previous;
    return {
      previousRelease: release,
      tasks: o.n,
      rounds: o.rounds,
      perSec,
      best: m,
      offToPrevious,
      noise,
      withinNoise: Math.abs(offToPrevious - 1) <= noise,
      onToOff: m.on / m.off,
      spans: receiver.spans(),
      posts: receiver.posts(),
    };
  } finally {
    for (const db of dbs) await db.close();
    await receiver.close();
    await run("git", ["worktree", "remove", "--force", prevDir], { cwd: repoRoot }).catch(() => undefined);
  }
}
