import { sql, type Kysely } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Database } from "../src/store/schema.js";
import { insertSyntheticFinishedTasks } from "../src/store/synthetic-tasks.js";
import { cappedCountQuery, listPageQuery, type TaskFilter } from "../src/store/tasks.js";
import { createTestDatabase, type TestDatabase } from "./helpers/database.js";

/**
 * Every ListTasks filter is served by an index: the plans of the statements listTasks runs, on a
 * table large enough that PostgreSQL would rather scan it than use a poor index.
 */

const TASKS = 60_000;
let database: TestDatabase;
const db = (): Kysely<Database> => database.db.kysely;

beforeAll(async () => {
  database = await createTestDatabase();
  for (let from = 1; from <= TASKS; from += 20_000) await insertSyntheticFinishedTasks(db(), from, from + 19_999, TASKS);
  await sql`vacuum analyze tasks`.execute(db());
}, 120_000);
afterAll(async () => database?.drop());

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  "Shared Hit Blocks"?: number;
  "Shared Read Blocks"?: number;
  Plans?: PlanNode[];
}

async function explain(query: { compile(db: Kysely<Database>): { sql: string; parameters: readonly unknown[] } }, analyze = false) {
  const compiled = query.compile(db());
  const options = analyze ? "analyze, buffers, format json" : "format json";
  const { rows } = await database.db.pool.query(`explain (${options}) ${compiled.sql}`, compiled.parameters as unknown[]);
  const plan = (rows[0]["QUERY PLAN"] as Array<{ Plan: PlanNode }>)[0]!.Plan;
  const nodes: PlanNode[] = [];
  const walk = (n: PlanNode) => {
    nodes.push(n);
    n.Plans?.forEach(walk);
  };
  walk(plan);
  return { plan, nodes };
}

const filter = (f: Partial<TaskFilter>): TaskFilter => ({ statuses: [], types: [], ids: [], limit: 51, ...f });

/** An id about half-way down, as a page token after 600 pages of 50 would carry. */
async function deepId(): Promise<string> {
  const { rows } = await sql<{ id: string }>`select id from tasks order by id desc offset 30000 limit 1`.execute(db());
  return rows[0]!.id;
}

describe("ListTasks query plans", () => {
  const cases: Array<{ name: string; filter: () => Promise<Partial<TaskFilter>> | Partial<TaskFilter>; indexes: string[] }> = [
    { name: "no filter", filter: () => ({}), indexes: ["tasks_pkey"] },
    { name: "one status", filter: () => ({ statuses: ["failed"] }), indexes: ["tasks_status_id_idx"] },
    { name: "several statuses", filter: () => ({ statuses: ["failed", "cancelled", "queued"] }), indexes: ["tasks_status_id_idx"] },
    { name: "one type", filter: () => ({ types: ["shell"] }), indexes: ["tasks_type_id_idx"] },
    { name: "several types", filter: () => ({ types: ["shell", "run_query"] }), indexes: ["tasks_type_id_idx"] },
    { name: "statuses and types", filter: () => ({ statuses: ["failed", "cancelled"], types: ["shell", "noop"] }), indexes: ["tasks_status_id_idx"] },
    { name: "ids", filter: () => ({ ids: ["5", "17", "40000", "59999"] }), indexes: ["tasks_pkey"] },
    { name: "a page token half-way down", filter: async () => ({ beforeId: await deepId() }), indexes: ["tasks_pkey"] },
    { name: "a page token with a status", filter: async () => ({ beforeId: await deepId(), statuses: ["failed"] }), indexes: ["tasks_status_id_idx"] },
    { name: "page 100 by number", filter: () => ({ offset: 4950, statuses: ["succeeded"] }), indexes: ["tasks_status_id_idx"] },
  ];

  for (const c of cases) {
    it(`reads a page by index, never scanning tasks: ${c.name}`, async () => {
      const { nodes } = await explain(listPageQuery(filter(await c.filter())));
      const scans = nodes.filter((n) => n["Relation Name"] === "tasks");
      expect(scans.length).toBeGreaterThan(0);
      expect(scans.filter((n) => !n["Node Type"].startsWith("Index")).map((n) => n["Node Type"])).toEqual([]);
      for (const index of c.indexes) expect(scans.map((n) => n["Index Name"])).toContain(index);
    });
  }

  it("counts an ids filter (the total not kept in the counts) by index", async () => {
    const { nodes } = await explain(cappedCountQuery(filter({ ids: ["5", "17", "40000"], statuses: ["succeeded"] })));
    const scans = nodes.filter((n) => n["Relation Name"] === "tasks");
    expect(scans).toHaveLength(1);
    expect(scans[0]!["Node Type"]).toMatch(/^Index (Only )?Scan$/);
  });

  it("reads as many blocks for a page half-way down as for the first page", async () => {
    // The top node's buffer counts include its children's.
    const blocks = async (f: TaskFilter) => {
      const { plan } = await explain(listPageQuery(f), true);
      return (plan["Shared Hit Blocks"] ?? 0) + (plan["Shared Read Blocks"] ?? 0);
    };
    const beforeId = await deepId();
    for (const f of [{}, { statuses: ["failed" as const] }, { types: ["shell", "noop"] }]) {
      const first = await blocks(filter(f));
      const deep = await blocks(filter({ ...f, beforeId }));
      // Same index depth, same page: a few blocks apart at most, never proportional to the 30,000 rows skipped.
      expect(deep).toBeLessThanOrEqual(first * 2 + 10);
    }
  });
});
