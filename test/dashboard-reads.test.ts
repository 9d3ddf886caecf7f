import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { foldTaskFinishDeltas } from "../src/store/task-finishes.js";
import { createdIdWindow } from "../src/store/tasks.js";
import { startInMemoryApi, type InMemoryApi } from "./helpers/api.js";
import { createTask, expectConnectError, setTaskRow } from "./helpers/factory.js";

/**
 * The reads the dashboard added (migration 0017): attempts ended per minute (GetTaskThroughput),
 * and ListTasks' name prefix and created-at range, against a real server and PostgreSQL.
 */

let api: InMemoryApi;
const db = () => api.database.db.kysely;

beforeAll(async () => {
  api = await startInMemoryApi();
});
afterAll(async () => api?.close());

async function throughputNow() {
  const { buckets } = await api.client.getTaskThroughput({});
  return buckets;
}

describe("GetTaskThroughput", () => {
  it("returns 60 one-minute buckets ending with the current minute, then counts each outcome as it happens", async () => {
    const before = await throughputNow();
    expect(before).toHaveLength(60);
    const starts = before.map((b) => timestampDate(b.startTime!).getTime());
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBe(60_000);
    const { rows } = await sql<{ now: Date }>`select date_trunc('minute', now()) as now`.execute(db());
    expect(starts.at(-1)).toBe(rows[0]!.now.getTime());

    const sum = (bs: typeof before, k: "succeeded" | "failed" | "cancelled" | "retried") => bs.reduce((n, b) => n + b[k], 0n);
    const ok = await createTask(api.client);
    await setTaskRow(db(), ok.id, "running");
    await setTaskRow(db(), ok.id, "succeeded");
    const retried = await createTask(api.client);
    await setTaskRow(db(), retried.id, "running");
    await setTaskRow(db(), retried.id, "retrying");
    await setTaskRow(db(), retried.id, "running");
    await setTaskRow(db(), retried.id, "failed");
    const cancelled = await createTask(api.client);
    await api.client.cancelTask({ id: cancelled.id });
    // A heartbeat-like update that changes no status counts nothing.
    await db().updateTable("tasks").set({ heartbeat_at: new Date() }).where("id", "=", String(ok.id)).execute();

    // Unfolded (deltas) and folded (task_finishes) read the same.
    for (const fold of [false, true]) {
      if (fold) await foldTaskFinishDeltas(db());
      const after = await throughputNow();
      expect(sum(after, "succeeded") - sum(before, "succeeded")).toBe(1n);
      expect(sum(after, "failed") - sum(before, "failed")).toBe(1n);
      expect(sum(after, "cancelled") - sum(before, "cancelled")).toBe(1n);
      expect(sum(after, "retried") - sum(before, "retried")).toBe(1n);
    }
    const { rows: left } = await sql<{ n: string }>`select count(*) as n from task_finish_deltas`.execute(db());
    expect(left[0]!.n).toBe("0");
  });

  it("takes the window's length and refuses one outside 1..1440 minutes", async () => {
    expect((await api.client.getTaskThroughput({ minutes: 5 })).buckets).toHaveLength(5);
    expect((await api.client.getTaskThroughput({ minutes: 1440 })).buckets).toHaveLength(1440);
    await expectConnectError(api.client.getTaskThroughput({ minutes: 1441 }), Code.InvalidArgument, /minutes/);
    await expectConnectError(api.client.getTaskThroughput({ minutes: -1 }), Code.InvalidArgument, /minutes/);
  });

  it("drops folded minutes older than a day", async () => {
    await sql`insert into task_finishes (minute, status, count) values (date_trunc('minute', now()) - interval '2 days', 'succeeded', 7)`.execute(db());
    await foldTaskFinishDeltas(db());
    const { rows } = await sql<{ n: string }>`select count(*) as n from task_finishes where minute < now() - interval '1 day'`.execute(db());
    expect(rows[0]!.n).toBe("0");
  });
});

describe("ListTasks by name prefix and creation time", () => {
  const created: Array<{ id: bigint; name: string; at: Date }> = [];

  beforeAll(async () => {
    // Tasks an hour apart (created_at rewritten, in id order as real inserts are), with names to search.
    const names = ["nightly-a", "nightly-b", "import_1", "import%2", "importX3", "other"];
    const base = Date.now() - 10 * 3600_000;
    // The tasks the tests above created are older still, as they would be in a real history.
    await db().updateTable("tasks").set({ created_at: new Date(base - 3600_000) }).execute();
    for (const [i, name] of names.entries()) {
      const task = await createTask(api.client, { name });
      const at = new Date(base + i * 3600_000);
      await db().updateTable("tasks").set({ created_at: at }).where("id", "=", String(task.id)).execute();
      created.push({ id: task.id, name, at });
    }
  });

  const namesOf = (tasks: { name: string }[]) => tasks.map((t) => t.name);

  it("matches a name prefix literally, % and _ included, with an exact total", async () => {
    let res = await api.client.listTasks({ namePrefix: "nightly-" });
    expect(namesOf(res.tasks)).toEqual(["nightly-b", "nightly-a"]);
    expect(res.totalCount).toBe(2n);
    expect(res.totalCountExact).toBe(true);
    res = await api.client.listTasks({ namePrefix: "import_" });
    expect(namesOf(res.tasks)).toEqual(["import_1"]);
    res = await api.client.listTasks({ namePrefix: "import%" });
    expect(namesOf(res.tasks)).toEqual(["import%2"]);
    res = await api.client.listTasks({ namePrefix: "import" });
    expect(namesOf(res.tasks)).toEqual(["importX3", "import%2", "import_1"]);
    res = await api.client.listTasks({ namePrefix: "Nightly" });
    expect(res.tasks).toEqual([]);
  });

  it("filters by created_after and created_before, combined with the other filters and paging", async () => {
    const at = (i: number) => timestampFromDate(created[i]!.at);
    let res = await api.client.listTasks({ createdAfter: at(2), createdBefore: at(5) });
    expect(namesOf(res.tasks)).toEqual(["importX3", "import%2", "import_1"]);
    expect(res.totalCount).toBe(3n);
    res = await api.client.listTasks({ createdAfter: at(2), createdBefore: at(5), namePrefix: "import", pageSize: 2 });
    expect(namesOf(res.tasks)).toEqual(["importX3", "import%2"]);
    res = await api.client.listTasks({ createdAfter: at(2), createdBefore: at(5), namePrefix: "import", pageSize: 2, pageToken: res.nextPageToken });
    expect(namesOf(res.tasks)).toEqual(["import_1"]);
    expect(res.nextPageToken).toBe("");
    res = await api.client.listTasks({ createdBefore: at(1) });
    expect(res.tasks.map((t) => t.id)).toEqual([created[0]!.id, ...(await olderThan(created[0]!.at))]);
  });

  /** Ids, newest first, of the tasks created before `at` other than the first fixture (those of the tests above). */
  async function olderThan(at: Date): Promise<bigint[]> {
    const rows = await db().selectFrom("tasks").select("id").where("created_at", "<", at).where("id", "<>", String(created[0]!.id)).orderBy("id", "desc").execute();
    return rows.map((r) => BigInt(r.id));
  }

  it("turns a time range into an id window that contains every task created in it", async () => {
    const window = await createdIdWindow(db(), { createdAfter: created[2]!.at, createdBefore: created[4]!.at });
    expect(window).not.toBe("empty");
    const w = window as { minId: string; maxIdExclusive: string };
    // The window is widened by the margin, so it holds the range's tasks (ids 2 and 3)...
    expect(BigInt(w.minId)).toBeLessThanOrEqual(created[2]!.id);
    expect(BigInt(w.maxIdExclusive)).toBeGreaterThan(created[3]!.id);
    // ...and, the tasks being an hour apart, nothing beyond the margin (task 4, created at the
    // exclusive bound itself, is in the window and left out by the exact condition).
    expect(BigInt(w.minId)).toBe(created[2]!.id);
    expect(BigInt(w.maxIdExclusive)).toBe(created[5]!.id);
    expect(await createdIdWindow(db(), { createdAfter: created[3]!.at, createdBefore: created[3]!.at })).toBe("empty");
    const future = await api.client.listTasks({ createdAfter: timestampFromDate(new Date(Date.now() + 3600_000)) });
    expect(future.tasks).toEqual([]);
    expect(future.totalCount).toBe(0n);
  });

  it("refuses a bad range or prefix and writes nothing", async () => {
    const now = timestampFromDate(new Date());
    await expectConnectError(api.client.listTasks({ createdAfter: now, createdBefore: now }), Code.InvalidArgument, /created_before/);
    await expectConnectError(api.client.listTasks({ createdAfter: { seconds: -100n, nanos: 0 } }), Code.InvalidArgument, /created_after/);
    await expectConnectError(api.client.listTasks({ namePrefix: "x".repeat(201) }), Code.InvalidArgument, /name_prefix/);
    await expectConnectError(api.client.listTasks({ namePrefix: "a\u0000" }), Code.InvalidArgument, /name_prefix/);
  });
});
