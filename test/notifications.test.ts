// Notifications: every channel is named in one module (src/store/channels.ts), a process holds one
// listener connection for all of them, and that connection comes back, LISTENing again, after
// PostgreSQL drops it.
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { startServices } from "../src/services.js";
import { CHANNELS, JOBS_INSERT_CHANNEL, QUEUE_CHANNEL, SCHEDULES_CHANNEL } from "../src/store/channels.js";
import { openListener } from "../src/store/listen.js";
import { createTestDatabase, type TestDatabase } from "./helpers/database.js";
import { waitFor } from "./helpers/wait.js";
import { fastWorkerConfig } from "./helpers/workers.js";

const root = path.resolve(import.meta.dirname, "..");

/** The channel literals of every pg_notify('<channel>', ...) in the SQL files of a directory. */
async function notifiedIn(dir: string): Promise<Set<string>> {
  const channels = new Set<string>();
  for (const file of (await readdir(dir)).filter((f) => f.endsWith(".sql"))) {
    const text = await readFile(path.join(dir, file), "utf8");
    for (const m of text.matchAll(/pg_notify\(\s*'([^']+)'/g)) channels.add(m[1]!);
  }
  return channels;
}

/** Every .ts file under a directory. */
async function sources(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith(".ts")).map((e) => path.join(e.parentPath, e.name));
}

describe("the channels module", () => {
  it("names every channel a migration notifies", async () => {
    const notified = await notifiedIn(path.join(root, "migrations"));
    expect(notified.size).toBeGreaterThan(0);
    for (const channel of notified) expect(CHANNELS, `migrations notify '${channel}'`).toContain(channel);
  });

  it("names the channel graphile-worker's own SQL notifies when it inserts jobs", async () => {
    const notified = await notifiedIn(path.join(root, "node_modules/graphile-worker/sql"));
    expect(notified).toContain(JOBS_INSERT_CHANNEL);
  });

  it("is the only source file that spells a channel's name", async () => {
    const own = path.join(root, "src/store/channels.ts");
    const offenders: string[] = [];
    for (const file of await sources(path.join(root, "src"))) {
      if (file === own || file.includes(`${path.sep}gen${path.sep}`)) continue;
      const text = await readFile(file, "utf8");
      for (const channel of CHANNELS) if (new RegExp(`["'\`]${channel}["'\`]`).test(text)) offenders.push(`${path.relative(root, file)}: ${channel}`);
    }
    expect(offenders).toEqual([]);
  });
});

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.drop();
});

/** The connections to the test database that have LISTENed (their last statement was a LISTEN), by application_name. */
async function listeningConnections(): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`
    select application_name as name from pg_stat_activity
    where datname = current_database() and pid <> pg_backend_pid() and query ilike 'listen %'
    order by 1
  `.execute(database.db.kysely);
  return rows.map((r) => r.name);
}

describe("one listener connection", () => {
  it("carries every channel, and LISTENs again on each after PostgreSQL drops it", async () => {
    const name = `test listener ${database.name}`;
    const listener = openListener(database.url, database.logger, name);
    const got: string[] = [];
    let queueStarts = 0;
    let scheduleStarts = 0;
    listener.subscribe(QUEUE_CHANNEL, (p) => got.push(`queue:${p}`), () => queueStarts++);
    const unsubscribe = listener.subscribe(SCHEDULES_CHANNEL, (p) => got.push(`schedules:${p}`), () => scheduleStarts++);
    try {
      await waitFor(() => queueStarts === 1 && scheduleStarts === 1, "both subscriptions listening");
      expect(await listeningConnections()).toEqual([name]);
      await sql`select pg_notify(${QUEUE_CHANNEL}, 'q1'), pg_notify(${SCHEDULES_CHANNEL}, 's1')`.execute(database.db.kysely);
      await waitFor(() => got.length === 2, "both notifications");
      expect(got.sort()).toEqual(["queue:q1", "schedules:s1"]);

      // PostgreSQL drops the connection (a restart, a failover): every subscriber hears it is listening again.
      await sql`select pg_terminate_backend(pid) from pg_stat_activity where application_name = ${name}`.execute(database.db.kysely);
      await waitFor(() => queueStarts === 2 && scheduleStarts === 2, "both subscriptions listening again");
      await sql`select pg_notify(${QUEUE_CHANNEL}, 'q2'), pg_notify(${SCHEDULES_CHANNEL}, 's2')`.execute(database.db.kysely);
      await waitFor(() => got.length === 4, "both notifications after the reconnection");
      expect(got.slice(2).sort()).toEqual(["queue:q2", "schedules:s2"]);

      // A subscription that ended hears nothing more; the others still do.
      unsubscribe();
      await sql`select pg_notify(${SCHEDULES_CHANNEL}, 's3'), pg_notify(${QUEUE_CHANNEL}, 'q3')`.execute(database.db.kysely);
      await waitFor(() => got.includes("queue:q3"), "the remaining subscription's notification");
      expect(got).not.toContain("schedules:s3");
    } finally {
      await listener.close();
    }
  });

  it("closes at once, even while it is still connecting (a process stopping just after it started)", async () => {
    // pg never settles a connect() whose client was ended meanwhile: a close then hung for ever.
    for (const afterMs of [0, 1, 5, 20]) {
      const listener = openListener(database.url, database.logger);
      listener.subscribe(QUEUE_CHANNEL, () => undefined);
      await new Promise((resolve) => setTimeout(resolve, afterMs));
      const closed = await Promise.race([listener.close().then(() => "closed"), new Promise((resolve) => setTimeout(resolve, 5_000, "hung"))]);
      expect(closed, `closed ${afterMs} ms after opening`).toBe("closed");
    }
  });

  it("is the only dedicated LISTEN connection of a worker process (serve) and of a server process", async () => {
    const logger = database.logger;
    const config = loadConfig({ ...fastWorkerConfig, databaseUrl: database.url, host: "127.0.0.1", port: 0, metricsPort: 0 }, {});
    // A worker process as `task-cli serve` runs it: workers, the scheduler, no API.
    const worker = await startServices(config, logger, { api: false, workers: 2, allowEmbedded: false });
    try {
      const pool = `task-service worker ${worker.workers!.workerId}`;
      // graphile-worker LISTENs on a client of the worker pool (for its cron jobs); everything else shares the listener.
      await waitFor(async () => (await listeningConnections()).length >= 2, "the worker's LISTEN connections");
      expect(await listeningConnections()).toEqual([pool, "task-service listener"].sort());
    } finally {
      await worker.stop();
    }
    // An API server process (`task-cli server`): WatchTask wake-ups and the scheduler share one
    // listener; with no workers in it, its upkeep's graphile-worker (the cron jobs, api/upkeep.ts)
    // LISTENs on a client of its pool, as a worker process's does.
    const server = await startServices(config, logger, { api: true, workers: 0, allowEmbedded: false });
    try {
      await waitFor(async () => (await listeningConnections()).length >= 2, "the server's LISTEN connections");
      expect(await listeningConnections()).toEqual(["task-service", "task-service listener"]);
    } finally {
      await server.stop();
    }
  });
});
