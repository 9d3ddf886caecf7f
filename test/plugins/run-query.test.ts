import { randomBytes } from "node:crypto";
import pg from "pg";
import Cursor from "pg-cursor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.js";
import { readWithBudget } from "../../src/plugins/row-budget.js";
import { runQueryPlugin, type RunQueryOptions, type RunQueryPlugin } from "../../src/plugins/run-query.js";
import { PLAYGROUND_DATABASE, urlForDatabase } from "../helpers/database.js";
import { eventually, pluginContext, settleWithin } from "../helpers/plugin-context.js";

const logger = createLogger("silent");
const tableName = `t_${randomBytes(5).toString("hex")}`;
/** The test's own table in the playground database, quoted once the admin client exists. */
let table: string;
let admin: pg.Client;
const plugins: RunQueryPlugin[] = [];

function plugin(overrides: Partial<RunQueryOptions> = {}): RunQueryPlugin {
  const created = runQueryPlugin({
    targets: { playground: urlForDatabase(PLAYGROUND_DATABASE) },
    writableTargets: [],
    statementTimeoutMs: 2000,
    poolSize: 5,
    maxResultBytes: 1024 * 1024,
    maxReadBytes: 64 * 1024 * 1024,
    logger,
    ...overrides,
  });
  plugins.push(created);
  return created;
}

let readOnly: RunQueryPlugin;
/** Statements may run for a minute, so only an abort can end them early. */
let slow: RunQueryPlugin;

beforeAll(async () => {
  admin = new pg.Client({ connectionString: urlForDatabase(PLAYGROUND_DATABASE) });
  await admin.connect();
  table = admin.escapeIdentifier(tableName);
  await admin.query(`create table if not exists ${table} (id integer primary key, label text not null)`);
  await admin.query(`insert into ${table} (id, label) select g, 'row ' || g from generate_series(1, 250) g`);
  readOnly = plugin();
  slow = plugin({ statementTimeoutMs: 60_000 });
});

afterAll(async () => {
  await Promise.all(plugins.map((p) => p.close()));
  await admin.query(`drop table if exists ${table}`);
  await admin.end();
});

function run(target: RunQueryPlugin, raw: unknown, ctx = pluginContext()) {
  return target.run(target.parameters.parse(raw), ctx);
}

async function rowCount(): Promise<number> {
  const { rows } = await admin.query<{ n: number }>(`select count(*)::int as n from ${table}`);
  return rows[0]!.n;
}

/** Backends running a statement that contains `marker`, other than the admin client's own. */
async function activeWith(marker: string): Promise<number[]> {
  const { rows } = await admin.query<{ pid: number }>(
    "select pid from pg_stat_activity where state = 'active' and query like $1 and pid <> pg_backend_pid()",
    [`%${marker}%`],
  );
  return rows.map((r) => r.pid);
}

describe("run_query", () => {
  it("counts every row, keeps the first max_rows and reports truncation", async () => {
    const ctx = pluginContext();
    const result = await run(readOnly, { sql: `select id, label from ${table} order by id`, max_rows: 10 }, ctx);

    expect(result).toEqual({
      target: "playground",
      row_count: 250,
      row_count_complete: true,
      columns: ["id", "label"],
      rows: Array.from({ length: 10 }, (_, i) => ({ id: i + 1, label: `row ${i + 1}` })),
      truncated: true,
    });
  });

  it("is not truncated when every row fits, and counts past one cursor batch", async () => {
    const small = await run(readOnly, { sql: `select id from ${table} where id <= 3 order by id` });
    expect(small).toMatchObject({ row_count: 3, rows: [{ id: 1 }, { id: 2 }, { id: 3 }], truncated: false });

    const large = await run(readOnly, { sql: "select g from generate_series(1, 2500) g" });
    expect(large).toMatchObject({ row_count: 2500, truncated: true });
    expect(large.rows).toHaveLength(100);
  });

  it("reads a result of one row in one round trip (the common case: now(), count(*))", async () => {
    // A read of n rows ends "suspended" after n rows even when nothing follows, so a first read of
    // one row could not see that a one-row result was complete and cost a second read.
    const budget = { maxRows: 100, maxResultBytes: 1024 * 1024, maxReadBytes: 64 * 1024 * 1024 };
    for (const [sql, rowCount] of [["select 1 as one", 1], ["select 1 as one where false", 0], ["select g from generate_series(1, 5) g", 5]] as const) {
      const cursor = admin.query(new Cursor(sql));
      const sizes: number[] = [];
      const read = cursor.read.bind(cursor);
      cursor.read = ((n: number) => (sizes.push(n), read(n))) as typeof cursor.read;
      const result = await readWithBudget(cursor, budget, new AbortController().signal);
      await cursor.close();
      expect(result).toMatchObject({ rowCount, countComplete: true });
      expect(sizes.length, `${sql}: reads of ${sizes.join(", ")} rows`).toBe(rowCount <= 1 ? 1 : 2);
    }
  });

  it("binds params to $1, $2", async () => {
    const result = await run(readOnly, { sql: `select id from ${table} where id = $1 or label = $2 order by id`, params: [7, "row 9"] });
    expect(result).toMatchObject({ row_count: 2, rows: [{ id: 7 }, { id: 9 }] });
  });

  it("runs in a read-only transaction by default", async () => {
    await expect(run(readOnly, { sql: `insert into ${table} (id, label) values (1000, 'sneaky')` })).rejects.toThrow(/read-only transaction/);
    expect(await rowCount()).toBe(250);
  });

  it("stops a statement at the statement timeout", async () => {
    await expect(run(readOnly, { sql: "select pg_sleep(10)" })).rejects.toThrow(/statement timeout/);
    // The connection went back to the pool in a usable state.
    await expect(run(readOnly, { sql: "select 1 as one" })).resolves.toMatchObject({ rows: [{ one: 1 }] });
  });

  it("cancels a running statement on the server when aborted", async () => {
    const marker = `abort_running_${randomBytes(4).toString("hex")}`;
    const ctx = pluginContext();
    const outcome = run(slow, { sql: `select pg_sleep(30) /* ${marker} */` }, ctx);
    await eventually(async () => (await activeWith(marker)).length > 0, "the statement to start");

    const reason = new Error("cancelled by user");
    ctx.controller.abort(reason);

    expect(await settleWithin(outcome, 10_000)).toEqual({ state: "rejected", reason });
    await eventually(async () => (await activeWith(marker)).length === 0, "the statement to stop on the server");
    await expect(run(slow, { sql: "select 2 as two" })).resolves.toMatchObject({ rows: [{ two: 2 }] });
  });

  it("honours an abort that arrives while it is still connecting", async () => {
    const marker = `abort_early_${randomBytes(4).toString("hex")}`;
    const ctx = pluginContext();
    try {
      const outcome = run(slow, { sql: `select pg_sleep(30) /* ${marker} */` }, ctx);
      // Before the statement is sent: run() is waiting for a pooled connection.
      const reason = new Error("cancelled early");
      ctx.controller.abort(reason);

      expect(await settleWithin(outcome, 10_000)).toEqual({ state: "rejected", reason });
    } finally {
      for (const pid of await activeWith(marker)) await admin.query("select pg_cancel_backend($1)", [pid]);
    }
  });

  it("reads wide rows under a byte budget: keeps what fits the result cap, stops counting at the read budget", async () => {
    const budgeted = plugin({ maxResultBytes: 64 * 1024, maxReadBytes: 32 * 1024 * 1024, statementTimeoutMs: 60_000 });
    // 45 rows of 8 MB: read whole, 360 MB; under the budget, about four rows are ever read.
    const wide = await run(budgeted, { sql: "select repeat('z', 8*1024*1024) as z from generate_series(1, 45)", max_rows: 1 });
    expect(wide).toMatchObject({ rows: [], truncated: true, row_count_complete: false, columns: ["z"] });
    expect(wide.row_count).toBeGreaterThan(0);
    expect(wide.row_count).toBeLessThan(45);

    // Narrow rows: as many kept as fit in 64 KB, every row still counted.
    const many = await run(budgeted, { sql: "select g, repeat('a', 1000) as pad from generate_series(1, 5000) g", max_rows: 1000 });
    expect(many).toMatchObject({ row_count: 5000, row_count_complete: true, truncated: true });
    const rows = many.rows as unknown[];
    expect(rows.length).toBeGreaterThan(10);
    expect(rows.length).toBeLessThan(100);
    expect(Buffer.byteLength(JSON.stringify(rows))).toBeLessThanOrEqual(64 * 1024);
    expect(rows[0]).toEqual({ g: 1, pad: "a".repeat(1000) });
  });

  it("cancels a statement at the limit from outside, even if it turned its own statement_timeout off", async () => {
    const limited = plugin({ statementTimeoutMs: 1500 });
    // Row 1 switches the session's timeout off; PostgreSQL then disarms it for the next cursor read.
    const marker = `timeout_off_${randomBytes(4).toString("hex")}`;
    const sql = `select case when g = 1 then set_config('statement_timeout', '0', false) else pg_sleep(case when g > 1000 then 1 else 0 end)::text end /* ${marker} */ from generate_series(1, 1030) g`;
    expect(await settleWithin(run(limited, { sql }), 20_000)).toEqual({ state: "rejected", reason: expect.objectContaining({ message: expect.stringMatching(/statement timeout/) }) });
    expect(await activeWith(marker)).toEqual([]);
  });

  it("resets the session before a connection is reused: settings and advisory locks do not carry over", async () => {
    const single = plugin({ poolSize: 1 });
    await run(single, { sql: "select set_config('search_path', 'evil, public', false), set_config('work_mem', '1GB', false), pg_advisory_lock(4242)" });
    const next = await run(single, {
      sql: "select current_setting('search_path') as search_path, current_setting('work_mem') as work_mem, (select count(*)::int from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()) as locks",
    });
    expect(next.rows).toEqual([{ search_path: '"$user", public', work_mem: "4MB", locks: 0 }]);
  });

  it("does not start when the signal is already aborted", async () => {
    const ctx = pluginContext();
    const reason = new Error("shutting down");
    ctx.controller.abort(reason);
    await expect(run(readOnly, { sql: `insert into ${table} (id, label) values (1001, 'x')` }, ctx)).rejects.toBe(reason);
  });
});

describe("run_query parameters", () => {
  it("applies defaults", () => {
    expect(readOnly.parameters.parse({ sql: "select 1" })).toEqual({ sql: "select 1", params: [], target: "playground", max_rows: 100, read_only: true });
  });

  it("rejects an unknown target, listing the known ones", () => {
    const parsed = readOnly.parameters.safeParse({ sql: "select 1", target: "production" });
    expect(parsed.error?.issues).toEqual([
      expect.objectContaining({ path: ["target"], message: expect.stringContaining("known: playground") }),
    ]);
  });

  it("rejects read_only=false unless the target is writable", () => {
    const parsed = readOnly.parameters.safeParse({ sql: "select 1", read_only: false });
    expect(parsed.error?.issues).toEqual([expect.objectContaining({ path: ["read_only"], message: expect.stringContaining("not allowed") })]);
  });

  it("rejects max_rows outside 1..1000 and unknown keys", () => {
    expect(readOnly.parameters.safeParse({ sql: "select 1", max_rows: 0 }).success).toBe(false);
    expect(readOnly.parameters.safeParse({ sql: "select 1", max_rows: 1001 }).success).toBe(false);
    expect(readOnly.parameters.safeParse({ sql: "select 1", database: "postgres://x" }).success).toBe(false);
  });
});

describe("run_query on a writable target", () => {
  it("writes with read_only=false, and stays read-only by default", async () => {
    const writable = plugin({ writableTargets: ["playground"] });

    await run(writable, { sql: `insert into ${table} (id, label) values ($1, $2)`, params: [500, "written"], read_only: false });
    const { rows } = await admin.query(`select label from ${table} where id = 500`);
    expect(rows).toEqual([{ label: "written" }]);

    await expect(run(writable, { sql: `insert into ${table} (id, label) values (501, 'x')` })).rejects.toThrow(/read-only transaction/);
    expect(await rowCount()).toBe(251);
  });
});
