import { Code } from "@connectrpc/connect";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { GroupCommit } from "../src/store/group-commit.js";
import { startInMemoryApi, type InMemoryApi } from "./helpers/api.js";
import { expectConnectError, jobOf } from "./helpers/factory.js";

let api: InMemoryApi;
beforeAll(async () => {
  api = await startInMemoryApi();
});
afterAll(async () => api?.close());

describe("concurrent CreateTask calls (group commit)", () => {
  it("share insert statements, and each task still gets its own row, history row and job", async () => {
    const calls = Array.from({ length: 24 }, (_, i) => api.client.createTask({ name: `coalesced-${i}`, type: "noop", priority: i }));
    const answers = await Promise.all(calls);
    const ids = answers.map((a) => a.task!.id);
    expect(new Set(ids).size).toBe(24);
    answers.forEach((a, i) => {
      expect(a.created).toBe(true);
      expect(a.task).toMatchObject({ name: `coalesced-${i}`, priority: i, status: TaskStatus.QUEUED });
    });
    // Rows written by one statement share its transaction id: fewer transactions than calls.
    const { rows } = await sql<{ n: string }>`select count(distinct xmin::text) as n from tasks where id = any(${ids.map(String)}::bigint[])`.execute(api.database.db.kysely);
    expect(Number(rows[0]!.n)).toBeLessThan(24);
    const history = await sql<{ task_id: string; status: string }>`select task_id, status from task_history where task_id = any(${ids.map(String)}::bigint[])`.execute(
      api.database.db.kysely,
    );
    expect(history.rows).toHaveLength(24);
    expect(history.rows.every((h) => h.status === "queued")).toBe(true);
    for (const id of ids) expect(await jobOf(api.database.db.kysely, id)).toBeDefined();
  });

  it("a bad call fails alone; its neighbours in the same window are created", async () => {
    const good = Array.from({ length: 6 }, (_, i) => api.client.createTask({ name: `neighbour-${i}`, type: "noop" }));
    const bad = api.client.createTask({ name: "bad", type: "noop", parameters: { sleep_ms: "soon" } });
    await expectConnectError(bad, Code.InvalidArgument);
    const created = await Promise.all(good);
    expect(created.every((c) => c.created && c.task!.id > 0n)).toBe(true);
  });
});

describe("GroupCommit", () => {
  it("retries each write of a failed batch alone, so only the faulty one fails", async () => {
    const statements: string[][] = [];
    const commit = new GroupCommit<string, string>(
      async (items) => {
        statements.push(items);
        if (items.includes("poison")) throw new Error("constraint violated by poison");
        return items.map((i) => i.toUpperCase());
      },
      { maxBatch: 100, maxInFlight: 1 },
    );
    const writes = ["a", "b", "poison", "c"].map((i) => commit.write(i).then((v) => ({ ok: v }), (e: Error) => ({ err: e.message })));
    expect(await Promise.all(writes)).toEqual([{ ok: "A" }, { ok: "B" }, { err: "constraint violated by poison" }, { ok: "C" }]);
    expect(statements[0]).toEqual(["a", "b", "poison", "c"]);
    expect(statements.slice(1).every((s) => s.length === 1)).toBe(true);
  });

  it("writes arriving while a flush is in flight go together in the next one, up to maxBatch", async () => {
    const sizes: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const commit = new GroupCommit<number, number>(
      async (items) => {
        sizes.push(items.length);
        if (sizes.length === 1) await gate;
        return items;
      },
      { maxBatch: 4, maxInFlight: 1 },
    );
    const first = commit.write(0);
    await new Promise((resolve) => setImmediate(resolve));
    const rest = Array.from({ length: 6 }, (_, i) => commit.write(i + 1));
    release();
    expect(await Promise.all([first, ...rest])).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(sizes).toEqual([1, 4, 2]);
    await commit.drained();
    expect(commit.pending).toBe(0);
  });
});
