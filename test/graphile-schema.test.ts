import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GRAPHILE_SCHEMA_USED } from "../src/store/jobs.js";
import { createTestDatabase, type TestDatabase } from "./helpers/database.js";

// src/store/jobs.ts reads and writes graphile-worker's private tables, which are not its API: this
// checks what that file assumes against the schema the pinned graphile-worker migrates to, so an
// upgrade that changes them fails here rather than in the claim.

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(() => t?.drop());

const JOBS_FILE = path.join("src", "store", "jobs.ts");

async function columnsOf(relation: string): Promise<Record<string, string>> {
  const { rows } = await sql<{ name: string; type: string }>`
    select attname as name, format_type(atttypid, atttypmod) as type from pg_attribute
    where attrelid = ${`graphile_worker.${relation}`}::regclass and attnum > 0 and not attisdropped
  `.execute(t.db.kysely);
  return Object.fromEntries(rows.map((r) => [r.name, r.type]));
}

describe("graphile-worker's schema, as src/store/jobs.ts uses it", () => {
  it("has every relation and column it reads, with the types it assumes", async () => {
    for (const [relation, columns] of Object.entries(GRAPHILE_SCHEMA_USED.relations)) {
      const actual = await columnsOf(relation);
      for (const [column, type] of Object.entries(columns)) expect(actual[column], `graphile_worker.${relation}.${column}`).toBe(type);
    }
  });

  it("has the job_spec add_jobs takes, attribute by attribute, and the functions it calls", async () => {
    const { rows } = await sql<{ attribute: string }>`
      select attname || ' ' || format_type(atttypid, atttypmod) as attribute from pg_attribute
      where attrelid = (select typrelid from pg_type where oid = 'graphile_worker.job_spec'::regtype) and attnum > 0 and not attisdropped
      order by attnum
    `.execute(t.db.kysely);
    expect(rows.map((r) => r.attribute)).toEqual(GRAPHILE_SCHEMA_USED.jobSpec);
    for (const fn of GRAPHILE_SCHEMA_USED.functions) {
      const { rows: found } = await sql<{ fn: string | null }>`select to_regprocedure(${`graphile_worker.${fn}`})::text as fn`.execute(t.db.kysely);
      expect(found[0]?.fn, fn).not.toBeNull();
    }
  });

  it("declares everything the file names, and no other file in src/ names graphile-worker's schema", async () => {
    const text = await readFile(JOBS_FILE, "utf8");
    const declaredNames = new Set([...Object.keys(GRAPHILE_SCHEMA_USED.relations), ...GRAPHILE_SCHEMA_USED.functions.map((f) => f.split("(")[0]!), "job_spec"]);
    const named = new Set([...text.matchAll(/graphile_worker\.(\w+)/g)].map((m) => m[1]!));
    expect([...named].filter((n) => !declaredNames.has(n))).toEqual([]);
    // Columns through the aliases the file uses: j and d for jobs, gt and k for tasks.
    const jobColumns = new Set([...Object.keys(GRAPHILE_SCHEMA_USED.relations._private_jobs), ...Object.keys(GRAPHILE_SCHEMA_USED.relations.jobs)]);
    const taskColumns = new Set(Object.keys(GRAPHILE_SCHEMA_USED.relations._private_tasks));
    const undeclared = [...text.matchAll(/\b(j|d|gt|k)\.([a-z_]+)/g)].filter(([, alias, column]) => !(alias === "j" || alias === "d" ? jobColumns : taskColumns).has(column!));
    expect(undeclared.map((m) => m[0])).toEqual([]);

    const dir = path.resolve("src");
    const files = (await readdir(dir, { recursive: true })).filter((f) => f.endsWith(".ts") && !f.startsWith(`gen${path.sep}`));
    const others: string[] = [];
    for (const file of files) {
      if (path.join("src", file) === JOBS_FILE) continue;
      if (/graphile_worker\s*\.|_private_(?:jobs|tasks|job_queues|known_crontabs)\b/i.test(await readFile(path.join(dir, file), "utf8"))) others.push(file);
    }
    expect(others).toEqual([]);
  });
});
