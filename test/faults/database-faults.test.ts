import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { JsonObject } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { checkTaskHistory } from "../../scripts/chaos/check-history.js";
import { startApiServer, type ApiServer } from "../../src/api/server.js";
import { loadConfig } from "../../src/config.js";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../../src/embedded-postgres.js";
import { TaskService } from "../../src/gen/task/v1/task_pb.js";
import { createLogger } from "../../src/logger.js";
import { builtinPlugins } from "../../src/plugins/builtin.js";
import { loadTasksWithHistory } from "../../scripts/chaos/audit.js";
import { pendingJobCounts } from "../../src/store/jobs.js";
import { openDb, type Db } from "../../src/store/db.js";
import { migrate } from "../../src/store/migrate.js";
import { alive, faultWorkerEnv, startWorkerProcess } from "../helpers/fault-workers.js";
import { spawnCli, type CliProcess } from "../helpers/process.js";
import { waitFor } from "../helpers/wait.js";

// This file stops PostgreSQL for real, so it runs a cluster of its own, with real worker processes.
const logger = createLogger(process.env.TEST_LOG_LEVEL ?? "silent");
let dir: string;
let pgDir: string;
let cluster: EmbeddedDatabase;
let db: Db;
let server: ApiServer;
const workers: CliProcess[] = [];
const plugins = builtinPlugins(loadConfig({ enableShell: true }, {}), logger);

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "task-db-faults-"));
  // Its own folder: as root, the embedded cluster runs as another user and opens it up.
  pgDir = await mkdtemp(path.join(os.tmpdir(), "task-db-faults-pg-"));
  cluster = await startEmbeddedPostgres(pgDir, logger);
  db = openDb({ connectionString: cluster.url, connectionTimeoutMillis: 2_000 }, logger);
  await migrate(db, logger);
  server = await startApiServer({ db, registry: plugins.registry, config: loadConfig({ port: 0, enableShell: true }, {}), logger });
}, 120_000);

afterAll(async () => {
  for (const w of workers) if (alive(w)) w.child.kill("SIGKILL");
  await server?.close();
  await db?.close();
  await cluster?.stop();
  await rm(dir, { recursive: true, force: true });
  await rm(pgDir, { recursive: true, force: true });
});

const client = () => createClient(TaskService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startWorkers(n: number, env: (i: number) => Record<string, string> = () => ({})): Promise<CliProcess[]> {
  const started = await Promise.all(Array.from({ length: n }, (_, i) => startWorkerProcess(db.pool, cluster.url, env(i))));
  workers.push(...started);
  return started;
}

async function restartPostgres(downMs: number): Promise<void> {
  await cluster.stop();
  await sleep(downMs);
  cluster = await startEmbeddedPostgres(pgDir, logger);
}

/** SIGTERM, and SIGKILL if still running after 30 s, so a failed test leaves no worker to take the next one's tasks. */
async function stopWorkers(running: CliProcess[]): Promise<void> {
  await Promise.all(
    running.filter(alive).map(async (w) => {
      w.child.kill("SIGTERM");
      const killer = setTimeout(() => w.child.kill("SIGKILL"), 30_000);
      await w.exited;
      clearTimeout(killer);
    }),
  );
}

/** What the workers that exited printed last (the message of an "every worker stays alive" check). */
function exitedOutput(running: CliProcess[]): string {
  return running
    .filter((w) => !alive(w))
    .map((w) => `worker ${w.child.pid} exited:\n${w.output().slice(-4000)}`)
    .join("\n");
}

/** Every task with the prefix, once all are terminal (on a time-out, what the workers said). */
async function settled(prefix: string, count: number, timeoutMs: number) {
  return waitFor(
    async () => {
      const tasks = await loadTasksWithHistory(db.kysely, prefix);
      return tasks.length === count && tasks.every((t) => ["succeeded", "failed", "cancelled"].includes(t.status)) ? tasks : undefined;
    },
    `${count} ${prefix} tasks to finish`,
    timeoutMs,
  ).catch(async (err: unknown) => {
    const { rows } = await db.pool.query("select status, count(*)::int as n from tasks where name like $1 group by status", [`${prefix}%`]);
    const tails = workers.map((w) => `--- worker ${w.child.pid} (${alive(w) ? "alive" : "exited"}):\n${w.output().slice(-3000)}`);
    throw new Error(`${String(err)}\nstatuses: ${JSON.stringify(rows)}\n${tails.join("\n")}`);
  });
}

describe("PostgreSQL faults", () => {
  it("8 restarts under load: every worker stays alive, every task succeeds once, no job is left", async () => {
    const running = await startWorkers(3);
    const tasks = Array.from({ length: 150 }, (_, i) =>
      i % 5 === 0
        ? { name: `restarts-${i}`, type: "shell", parameters: { command: "sleep 0.3; echo ok" } as JsonObject }
        : { name: `restarts-${i}`, type: "noop", parameters: { sleep_ms: 100 + (i % 7) * 100 } as JsonObject },
    );
    await client().createTasks({ tasks });
    onTestFinished(() => stopWorkers(running));
    for (let i = 0; i < 8; i++) {
      await sleep(1_500);
      await restartPostgres(1_000);
    }
    const done = await settled("restarts-", 150, 120_000);
    expect(done.flatMap((t) => checkTaskHistory(t))).toEqual([]);
    expect(done.filter((t) => t.status !== "succeeded").map((t) => `${t.name}: ${t.status} ${t.last_error}`)).toEqual([]);
    expect(running.map(alive), exitedOutput(running)).toEqual([true, true, true]);
    // Completions graphile-worker lost in a restart leave locked jobs; the reconciler removes them.
    await waitFor(async () => (await pendingJobCounts(db.kysely)).jobs === 0, "no run_task job left", 30_000).catch(async (err: unknown) => {
      const { rows } = await db.pool.query(
        "select j.id, j.key, j.locked_at, j.locked_by, j.attempts, j.run_at, j.last_error, t.status, t.attempts as task_attempts from graphile_worker._private_jobs j left join tasks t on t.id = (j.payload->>'taskId')::bigint",
      );
      throw new Error(`${String(err)}: ${JSON.stringify(rows)}`);
    });
  }, 240_000);

  it("down for 90 s: no worker exits, attempts that finished meanwhile are recorded as they ended, nothing ran twice", async () => {
    const spools = [path.join(dir, "spool-0"), path.join(dir, "spool-1")];
    const running = await startWorkers(2, (i) => ({ TASK_SPOOL_DIR: spools[i]! }));
    onTestFinished(() => stopWorkers(running));
    // One attempt each: a lost one would end FAILED. They finish 20 s into the outage.
    const { tasks } = await client().createTasks({
      tasks: [1, 2, 3, 4].map((i) => ({ name: `outage-${i}`, type: "noop", parameters: { sleep_ms: 25_000 }, maxAttempts: 1 })),
    });
    await waitFor(async () => (await db.pool.query("select count(*)::int as n from tasks where name like 'outage-%' and status = 'running'")).rows[0].n === 4, "all four to run", 30_000);
    await cluster.stop();
    const downAt = Date.now();
    // The outcomes wait on disk (and in memory) while the database is away.
    await waitFor(async () => (await Promise.all(spools.map((d) => readdir(d).catch(() => [])))).flat().length === 4, "four spooled outcomes", 60_000);
    await sleep(Math.max(0, 90_000 - (Date.now() - downAt)));
    expect(running.map(alive), exitedOutput(running)).toEqual([true, true]);
    cluster = await startEmbeddedPostgres(pgDir, logger);

    const done = await settled("outage-", 4, 60_000);
    expect(done.flatMap((t) => checkTaskHistory(t))).toEqual([]);
    for (const t of done) {
      expect(t.status, `${t.name}: ${t.last_error}`).toBe("succeeded");
      // Each ran once: one attempt started, none lost.
      expect(t.history.filter((h) => h.status === "running")).toHaveLength(1);
    }
    // A worker deletes a spooled outcome once the database has taken it, so the file may outlive
    // the commit the test just saw by a moment: wait for it rather than race it.
    await waitFor(async () => (await Promise.all(spools.map((d) => readdir(d).catch(() => [])))).flat().length === 0, "the delivered outcomes' spool files to be removed", 10_000);
    expect(running.map(alive), exitedOutput(running)).toEqual([true, true]);
    expect(tasks).toHaveLength(4);
  }, 240_000);

  it("a worker started while PostgreSQL is down waits for it, then runs tasks", async () => {
    await cluster.stop();
    const w = spawnCli(["serve", "-n", "2"], { DATABASE_URL: cluster.url, ...faultWorkerEnv });
    workers.push(w);
    onTestFinished(() => stopWorkers([w]));
    await sleep(4_000);
    expect(alive(w), exitedOutput([w])).toBe(true);
    cluster = await startEmbeddedPostgres(pgDir, logger);
    const { task } = await client().createTask({ name: "started-in-outage", type: "noop" });
    const done = await settled("started-in-outage", 1, 60_000);
    expect(done.map((t) => t.status)).toEqual(["succeeded"]);
    expect(String(task!.id)).toBe(String(done[0]!.id));
    expect(alive(w), exitedOutput([w])).toBe(true);
  }, 120_000);
});

