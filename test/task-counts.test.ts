import { randomBytes } from "node:crypto";
import { copyFile, mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { sql, type Kysely } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { Metrics } from "../src/metrics.js";
import { reconcile } from "../src/queue/reconcile.js";
import { openDb } from "../src/store/db.js";
import { migrate, migrationsDir } from "../src/store/migrate.js";
import { insertSyntheticFinishedTasks } from "../scripts/synthetic-tasks.js";
import { countTasksByTypeAndStatus, foldTaskCountDeltas } from "../src/store/task-counts.js";
import type { Database } from "../src/store/schema.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { urlForDatabase } from "./helpers/database.js";
import { waitFor } from "./helpers/wait.js";
import { createTask, setTaskRow, taskRequest } from "./helpers/factory.js";

const metrics = new Metrics();
let api: TestApi;
beforeAll(async () => {
  api = await startTestApi({ metrics });
});
afterAll(async () => api?.close());

const db = () => api.database.db.kysely;

/** The truth, counted the expensive way: "type/status" → count. */
async function countedFromTasks(): Promise<Record<string, number>> {
  const { rows } = await sql<{ type: string; status: string; n: string }>`select type, status, count(*) as n from tasks group by type, status`.execute(db());
  return Object.fromEntries(rows.map((r) => [`${r.type}/${r.status}`, Number(r.n)]));
}

async function maintained(): Promise<Record<string, number>> {
  return Object.fromEntries((await countTasksByTypeAndStatus(db())).map((g) => [`${g.type}/${g.status}`, g.count]));
}

async function unfoldedDeltas(): Promise<number> {
  const { rows } = await sql<{ n: string }>`select count(*) as n from task_count_deltas`.execute(db());
  return Number(rows[0]!.n);
}

describe("maintained task counts", () => {
  it("follow inserts, transitions, type changes and deletes, folded or not", async () => {
    await api.client.createTasks({ tasks: Array.from({ length: 30 }, () => taskRequest()) });
    const shells = await api.client.createTasks({ tasks: Array.from({ length: 5 }, () => taskRequest({ type: "shell", parameters: { command: "true" } })) });
    const email = await createTask(api.client, { type: "send_email", parameters: { to: "a@example.com", subject: "s", body: "b" } });
    await api.client.cancelTask({ id: email.id });
    await setTaskRow(db(), shells.tasks[0]!.id, "running");
    await setTaskRow(db(), shells.tasks[1]!.id, "failed");
    await api.client.retryTask({ id: shells.tasks[1]!.id });
    await db().updateTable("tasks").set({ type: "noop" }).where("id", "=", String(shells.tasks[2]!.id)).execute();
    // Updates that change no status (heartbeats) must not add deltas: none written by that transaction.
    const deltasWrittenBy = (update: (trx: Kysely<Database>) => Promise<unknown>) =>
      db()
        .transaction()
        .execute(async (trx) => {
          await update(trx);
          const { rows } = await sql<{ n: string }>`select count(*) as n from task_count_deltas where xmin::text::bigint = txid_current() % 4294967296`.execute(trx);
          return Number(rows[0]!.n);
        });
    expect(await deltasWrittenBy((trx) => trx.updateTable("tasks").set({ heartbeat_at: new Date() }).where("type", "=", "shell").execute())).toBe(0);
    // ...while a status change writes its two (-1 old, +1 new).
    expect(await deltasWrittenBy((trx) => trx.updateTable("tasks").set({ status: "running" }).where("id", "=", String(shells.tasks[4]!.id)).execute())).toBe(2);
    expect(await maintained()).toEqual(await countedFromTasks());

    await foldTaskCountDeltas(db());
    expect(await unfoldedDeltas()).toBe(0);
    expect(await maintained()).toEqual(await countedFromTasks());

    // Retention: a bulk delete of finished and unfinished tasks alike.
    await db().deleteFrom("tasks").where("id", "in", [String(email.id), String(shells.tasks[3]!.id)]).execute();
    await sql`delete from tasks where id in (select id from tasks where type = 'noop' order by id limit 7)`.execute(db());
    expect(await maintained()).toEqual(await countedFromTasks());
    await reconcile(db(), 15_000, api.database.logger); // workers fold in their reconcile pass
    expect(await unfoldedDeltas()).toBe(0);
    expect(await maintained()).toEqual(await countedFromTasks());

    // GetTaskStatusCounts serves the same groups per type, ordered by type then status.
    const { typeCounts } = await api.client.getTaskStatusCounts({});
    const served = Object.fromEntries(typeCounts.map((c) => [`${c.type}/${TaskStatus[c.status]!.toLowerCase()}`, Number(c.count)]));
    expect(served).toEqual(await countedFromTasks());
    const order = typeCounts.map((c) => [c.type, c.status] as const);
    expect(order).toEqual([...order].sort(([t1, s1], [t2, s2]) => (t1 < t2 ? -1 : t1 > t2 ? 1 : s1 - s2)));
  });

  it("are folded by the running API server within seconds", async () => {
    await api.client.createTasks({ tasks: Array.from({ length: 10 }, () => taskRequest()) });
    await waitFor(async () => (await unfoldedDeltas()) === 0, "the server to fold the count deltas");
    expect(await maintained()).toEqual(await countedFromTasks());
  });

  it("ignore changes that roll back", async () => {
    const task = await createTask(api.client);
    const before = await maintained();
    await db()
      .transaction()
      .execute(async (trx) => {
        await trx.updateTable("tasks").set({ status: "succeeded" }).where("id", "=", String(task.id)).execute();
        await trx.deleteFrom("tasks").where("status", "=", "queued").execute();
        throw new Error("roll back");
      })
      .catch(() => undefined);
    expect(await maintained()).toEqual(before);
  });

  it("stay exact while transitions and folds run concurrently", async () => {
    const { tasks } = await api.client.createTasks({ tasks: Array.from({ length: 200 }, () => taskRequest()) });
    const statuses = ["running", "succeeded", "failed", "retrying", "cancelled"] as const;
    const transitions = tasks.map((t, i) => setTaskRow(db(), t.id, statuses[i % statuses.length]!));
    const folds = Array.from({ length: 20 }, () => foldTaskCountDeltas(db()));
    const reads = Array.from({ length: 20 }, () => api.client.getTaskStatusCounts({}));
    await Promise.all([...transitions, ...folds, ...reads]);
    expect(await maintained()).toEqual(await countedFromTasks());
    await foldTaskCountDeltas(db());
    expect(await maintained()).toEqual(await countedFromTasks());
  });

  it("are served without reading tasks: counts and /metrics answer while tasks is locked", async () => {
    const expected = await api.client.getTaskStatusCounts({});
    // An ACCESS EXCLUSIVE lock blocks every read of tasks; count(*) over tasks would wait for it.
    const locker = new pg.Client({ connectionString: api.database.url });
    await locker.connect();
    try {
      await locker.query("begin");
      await locker.query("lock table tasks in access exclusive mode");
      const deadline = <T>(p: Promise<T>) =>
        Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error("blocked on the tasks table")), 10_000))]);
      const counts = await deadline(api.client.getTaskStatusCounts({}));
      expect(counts).toEqual(expected);
      const text = await deadline(fetch(`${api.server.url}/metrics`).then((r) => r.text()));
      const queued = expected.counts.find((c) => c.status === TaskStatus.QUEUED)!.count;
      expect(text).toContain(`task_service_tasks{status="queued"} ${queued}`);
    } finally {
      await locker.query("rollback");
      await locker.end();
    }
  });
});

describe("migration 0011", () => {
  it("starts the counts from the tasks already stored", async () => {
    const name = `counts_${randomBytes(6).toString("hex")}`;
    const admin = new pg.Client({ connectionString: inject("pgAdminUrl") });
    await admin.connect();
    await admin.query(`create database ${name}`);
    const dir = await mkdtemp(path.join(os.tmpdir(), "migrations-before-0011-"));
    const database = openDb({ connectionString: urlForDatabase(name), max: 2 }, api.database.logger);
    try {
      for (const file of await readdir(migrationsDir)) if (/^\d{4}_/.test(file) && file < "0011") await copyFile(path.join(migrationsDir, file), path.join(dir, file));
      await migrate(database, api.database.logger, dir);
      await insertSyntheticFinishedTasks(database.kysely, 1, 500, 500);
      await sql`update tasks set status = 'queued' where id % 7 = 0`.execute(database.kysely);
      await migrate(database, api.database.logger);
      const { rows } = await sql<{ type: string; status: string; n: string }>`select type, status, count(*) as n from tasks group by type, status`.execute(database.kysely);
      const counted = Object.fromEntries(rows.map((r) => [`${r.type}/${r.status}`, Number(r.n)]));
      const kept = Object.fromEntries((await countTasksByTypeAndStatus(database.kysely)).map((g) => [`${g.type}/${g.status}`, g.count]));
      expect(Object.keys(kept).length).toBeGreaterThan(4);
      expect(kept).toEqual(counted);
    } finally {
      await database.close();
      await admin.query(`drop database if exists ${name} with (force)`);
      await admin.end();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
