import { randomBytes } from "node:crypto";
import { copyFile, mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/logger.js";
import { openDb, type Db } from "../src/store/db.js";
import { migrate, migrationsDir } from "../src/store/migrate.js";
import { adminQuery, urlForDatabase } from "./helpers/database.js";

// Migration 0012 moves jobs written before it (identifier run_task) to their per-(queue, type)
// identifier, and keeps the counts' queue dimension right.
const logger = createLogger(process.env.TEST_LOG_LEVEL ?? "silent");
const name = `pre12_${randomBytes(6).toString("hex")}`;
let db: Db;
let before: string;

beforeAll(async () => {
  await adminQuery(`create database ${name}`);
  db = openDb({ connectionString: urlForDatabase(name), max: 4 }, logger);
  before = await mkdtemp(path.join(os.tmpdir(), "pre12-"));
  for (const file of await readdir(migrationsDir)) if (file < "0012") await copyFile(path.join(migrationsDir, file), path.join(before, file));
  await migrate(db, logger, before);
});
afterAll(async () => {
  await db?.close();
  await adminQuery(`drop database if exists ${name} with (force)`);
  await rm(before, { recursive: true, force: true });
});

describe("migration 0012 on a database with pending run_task jobs", () => {
  it("re-files them under run:default:<type> with their queue flag; the counts stay per queue", async () => {
    const { rows } = await db.pool.query(
      `insert into tasks (name, type, parameters, max_attempts, timeout_ms) values ('old-shell', 'shell', '{"command":"true"}', 3, 1000), ('old-noop', 'noop', '{}', 3, 1000) returning id, type`,
    );
    for (const r of rows) {
      await db.pool.query(`select graphile_worker.add_job('run_task', json_build_object('taskId', $1::text, 'attempt', 1), job_key => 'task:' || $1)`, [r.id]);
    }
    expect((await migrate(db, logger)).applied).toContain("0012_queues");
    const { rows: jobs } = await db.pool.query(
      `select j.key, j.task_identifier, p.flags from graphile_worker.jobs j join graphile_worker._private_jobs p on p.id = j.id order by j.key`,
    );
    const byKey = new Map(rows.map((r) => [`task:${r.id}`, r.type as string]));
    expect(jobs).toHaveLength(2);
    for (const j of jobs) {
      expect(j.task_identifier).toBe(`run:default:${byKey.get(j.key)}`);
      expect(j.flags).toEqual({ "queue:default": true });
    }
    const { rows: tasks } = await db.pool.query("select distinct queue from tasks");
    expect(tasks).toEqual([{ queue: "default" }]);
    // A task moved to another queue moves its count with it.
    await db.pool.query("update tasks set queue = 'other' where name = 'old-noop'");
    const { rows: counts } = await db.pool.query(
      `select queue, sum(n)::int as n from (select queue, count as n from task_counts union all select queue, delta from task_count_deltas) c group by queue having sum(n) <> 0 order by queue`,
    );
    expect(counts).toEqual([
      { queue: "default", n: 1 },
      { queue: "other", n: 1 },
    ]);
  });
});
