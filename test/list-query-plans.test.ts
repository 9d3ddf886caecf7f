import { sql, type Kysely } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Database } from "../src/store/schema.js";
import { insertSyntheticFinishedTasks } from "../scripts/bench/synthetic-tasks.js";
import { lastMinutesFinishesQuery } from "../src/store/task-finishes.js";
import { oldestWaitingAgesQuery } from "../src/store/queues.js";
import { cappedCountQuery, createdIdWindow, firstIdCreatedFromQuery, listPageQuery, type IdWindow, type TaskFilter } from "../src/store/tasks.js";
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
    // Nine tasks in ten succeeded: reading the primary key backwards and skipping the rest costs about
    // what the status index does, and the planner takes either; what matters is that neither scans tasks.
    { name: "page 100 by number", filter: () => ({ offset: 4950, statuses: ["succeeded"] }), indexes: [] },
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

  /** A filter with a created-at range, bounded by its id window as listTasks does. */
  async function timeFilter(f: Partial<TaskFilter>): Promise<TaskFilter & IdWindow> {
    const window = await createdIdWindow(db(), f);
    if (window === "empty") throw new Error("empty window");
    return { ...filter(f), ...window };
  }
  const daysAgo = (d: number) => new Date(Date.now() - d * 86_400_000);

  it("finds a time bound's id by primary-key probes alone, a few dozen blocks", async () => {
    const { plan, nodes } = await explain(firstIdCreatedFromQuery(daysAgo(12)), true);
    const scans = nodes.filter((n) => n["Relation Name"] === "tasks");
    expect(scans.filter((n) => !n["Node Type"].startsWith("Index")).map((n) => n["Node Type"])).toEqual([]);
    // ~16 probes (log2 of 60,000 ids), each an index descent and a heap fetch: far below the table's blocks.
    expect((plan["Shared Hit Blocks"] ?? 0) + (plan["Shared Read Blocks"] ?? 0)).toBeLessThan(300);
  });

  for (const c of [
    { name: "created after", f: () => ({ createdAfter: daysAgo(3) }) },
    { name: "created before, far back", f: () => ({ createdBefore: daysAgo(25) }) },
    { name: "created between, with a status", f: () => ({ createdAfter: daysAgo(20), createdBefore: daysAgo(10), statuses: ["failed" as const] }) },
  ]) {
    it(`reads a time-filtered page by index within its id window: ${c.name}`, async () => {
      const f = await timeFilter(c.f());
      const { plan, nodes } = await explain(listPageQuery(f), true);
      const scans = nodes.filter((n) => n["Relation Name"] === "tasks");
      expect(scans.filter((n) => !n["Node Type"].startsWith("Index")).map((n) => n["Node Type"])).toEqual([]);
      // A page, not the range: the range holds thousands of tasks (10 days of 30 is 20,000).
      expect((plan["Shared Hit Blocks"] ?? 0) + (plan["Shared Read Blocks"] ?? 0)).toBeLessThan(800);
    });
  }

  it("reads a rare name prefix from the name index", async () => {
    const { nodes } = await explain(listPageQuery(filter({ namePrefix: "bench-4711" })));
    const scans = nodes.filter((n) => n["Relation Name"] === "tasks");
    expect(scans.filter((n) => !n["Node Type"].startsWith("Index") && n["Node Type"] !== "Bitmap Heap Scan").map((n) => n["Node Type"])).toEqual([]);
    const indexes = nodes.map((n) => n["Index Name"]);
    expect(indexes).toContain("tasks_name_pattern_idx");
  });

  it("reads each queue's oldest waiting tasks for /metrics from the waiting-tasks index, never scanning tasks", async () => {
    const { nodes } = await explain(oldestWaitingAgesQuery(["default", "reports"]));
    const scans = nodes.filter((n) => n["Relation Name"] === "tasks");
    expect(scans.map((n) => n["Index Name"])).toEqual(["tasks_waiting_queue_idx"]);
    expect(scans.filter((n) => !n["Node Type"].startsWith("Index")).map((n) => n["Node Type"])).toEqual([]);
  });

  it("reads the throughput chart from the per-minute counts, never from tasks", async () => {
    const { nodes } = await explain(lastMinutesFinishesQuery(60));
    expect(nodes.filter((n) => n["Relation Name"] === "tasks")).toEqual([]);
    expect(nodes.map((n) => n["Index Name"])).toContain("task_finishes_pkey");
  });
});
