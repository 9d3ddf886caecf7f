import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type ApiServer } from "../src/api/server.js";
import { loadConfig } from "../src/config.js";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../src/embedded-postgres.js";
import { TaskService, TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { createLogger } from "../src/logger.js";
import { builtinPlugins } from "../src/plugins/builtin.js";
import { startWorkers, type Workers } from "../src/worker/runner.js";
import { openDb, type Db } from "../src/store/db.js";
import { migrate } from "../src/store/migrate.js";
import { fastWorkerConfig } from "./helpers/workers.js";
import { waitFor } from "./helpers/wait.js";

// This file restarts PostgreSQL, so it runs its own cluster rather than the shared test one.
const logger = createLogger(process.env.TEST_LOG_LEVEL ?? "silent");
let dir: string;
let cluster: EmbeddedDatabase;
let db: Db;
let server: ApiServer;
let workers: Workers;
const plugins = builtinPlugins(loadConfig({}, {}), logger);

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "task-outage-"));
  cluster = await startEmbeddedPostgres(dir, logger);
  db = openDb({ connectionString: cluster.url, connectionTimeoutMillis: 2_000 }, logger);
  await migrate(db, logger);
  const config = loadConfig({ ...fastWorkerConfig, port: 0, leaseMs: 2_000, reconcileIntervalMs: 500 }, {});
  server = await startApiServer({ db, registry: plugins.registry, config, logger });
  workers = await startWorkers({ databaseUrl: cluster.url, registry: plugins.registry, config, logger });
}, 120_000);

afterAll(async () => {
  await workers?.stop();
  await server?.close();
  await db?.close();
  await cluster?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("PostgreSQL restart", () => {
  it("the API answers Unavailable while it is down, and nothing is lost or recorded twice", async () => {
    const client = createClient(TaskService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    const { tasks } = await client.createTasks({
      tasks: Array.from({ length: 40 }, (_, i) => ({ name: `t${i}`, type: "noop", parameters: { sleep_ms: 300 } })),
    });
    await waitFor(async () => (await client.getTaskStatusCounts({})).counts.some((c) => c.status === TaskStatus.SUCCEEDED && c.count > 0n), "some tasks to finish");

    await cluster.stop();
    const down = await client.getTaskStatusCounts({}).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(down).toMatchObject({ code: Code.Unavailable });
    await expect(client.createTask({ name: "while-down", type: "noop" })).rejects.toMatchObject({ code: Code.Unavailable });

    cluster = await startEmbeddedPostgres(dir, logger);
    await waitFor(async () => (await client.getTaskStatusCounts({})).total === 40n, "the API to recover", 30_000);

    const ids = tasks.map((t) => t.id);
    await waitFor(async () => {
      const { counts } = await client.getTaskStatusCounts({});
      return counts.find((c) => c.status === TaskStatus.SUCCEEDED)?.count === 40n;
    }, "every task to succeed after the restart", 60_000);

    const { rows } = await db.pool.query(
      `select task_id, count(*) filter (where status = 'succeeded')::int as succeeded
       from task_history where task_id = any($1::bigint[]) group by task_id`,
      [ids.map(String)],
    );
    expect(rows).toHaveLength(40);
    for (const row of rows) expect(row.succeeded).toBe(1);
  }, 120_000);
});
