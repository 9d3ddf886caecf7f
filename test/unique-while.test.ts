import { Code } from "@connectrpc/connect";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "../src/sdk/index.js";
import { createTaskClient } from "../src/sdk/client.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";
import { expectConnectError, rowCounts, taskRequest } from "./helpers/factory.js";

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => api?.close());

const unfinished = { mode: { case: "unfinished" as const, value: true } };
const windowOf = (seconds: number) => ({ mode: { case: "window" as const, value: { seconds: BigInt(seconds), nanos: 0 } } });
const cli = (...args: string[]) => runCli(["--address", api.server.url, ...args]);

/** Task ids of a queue's key, oldest first. */
async function idsOfKey(key: string, queue = "default"): Promise<string[]> {
  const rows = await api.database.db.kysely.selectFrom("tasks").select("id").where("queue", "=", queue).where("key", "=", key).orderBy("id").execute();
  return rows.map((r) => r.id);
}

async function auditRows(): Promise<number> {
  const { rows } = await sql<{ n: string }>`select count(*) as n from audit_events`.execute(api.database.db.kysely);
  return Number(rows[0]!.n);
}

describe("unique_while unfinished", () => {
  it("creates exactly one task when 20 creates of the same key arrive at once over HTTP", async () => {
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) => api.client.createTask({ ...taskRequest({ name: `racer-${i}` }), key: "race", uniqueWhile: unfinished })),
    );
    expect(responses.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(responses.map((r) => r.task!.id)).size).toBe(1);
    expect(await idsOfKey("race")).toEqual([String(responses[0]!.task!.id)]);
  });

  it("answers with the unfinished task, writing nothing, and creates a new one once it has finished", async () => {
    const first = await api.client.createTask({ ...taskRequest(), key: "report-7", uniqueWhile: unfinished });
    expect(first.created).toBe(true);
    const before = await rowCounts(api.database.db.kysely);
    const audits = await auditRows();
    const again = await api.client.createTask({ ...taskRequest({ name: "another name" }), key: "report-7", uniqueWhile: unfinished });
    expect(again).toMatchObject({ created: false, task: { id: first.task!.id, name: first.task!.name } });
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
    // Like an idempotent replay, an answered create changes nothing, so it is not audited.
    expect(await auditRows()).toBe(audits);

    // A task of the same key created without unique_while neither holds the key nor is held.
    const plain = await api.client.createTask({ ...taskRequest(), key: "report-7" });
    expect(plain.created).toBe(true);
    // Nor does the same key in another queue.
    const elsewhere = await api.client.createTask({ ...taskRequest({ queue: "other" }), key: "report-7", uniqueWhile: unfinished });
    expect(elsewhere.created).toBe(true);

    await api.client.cancelTask({ id: first.task!.id, reason: "finished" });
    const after = await api.client.createTask({ ...taskRequest(), key: "report-7", uniqueWhile: unfinished });
    expect(after.created).toBe(true);
    expect(after.task!.id).not.toBe(first.task!.id);
    expect(await auditRows()).toBe(audits + 4);
  });

  it("in one batch, creates the first of a key and answers the rest with it", async () => {
    const existing = await api.client.createTask({ ...taskRequest(), key: "batch-old", uniqueWhile: unfinished });
    const res = await api.client.createTasks({
      tasks: [
        { ...taskRequest({ name: "a" }), key: "batch-new", uniqueWhile: unfinished },
        { ...taskRequest({ name: "b" }), key: "batch-old", uniqueWhile: unfinished },
        { ...taskRequest({ name: "c" }), key: "batch-new", uniqueWhile: windowOf(60) },
        { ...taskRequest({ name: "d" }) },
      ],
    });
    expect(res.created).toEqual([true, false, false, true]);
    expect(res.tasks.map((t) => t.name)).toEqual(["a", existing.task!.name, "a", "d"]);
    expect(res.tasks[2]!.id).toBe(res.tasks[0]!.id);
    expect(await idsOfKey("batch-new")).toEqual([String(res.tasks[0]!.id)]);
  });
});

describe("unique_while window", () => {
  it("answers with the last task within the window and creates one after it", async () => {
    const first = await api.client.createTask({ ...taskRequest(), key: "debounce", uniqueWhile: windowOf(1) });
    expect(first.created).toBe(true);
    // Finished or not, it holds the key for the window.
    await api.client.cancelTask({ id: first.task!.id, reason: "done" });
    const within = await api.client.createTask({ ...taskRequest(), key: "debounce", uniqueWhile: windowOf(1) });
    expect(within).toMatchObject({ created: false, task: { id: first.task!.id } });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const after = await api.client.createTask({ ...taskRequest(), key: "debounce", uniqueWhile: windowOf(1) });
    expect(after.created).toBe(true);
    // The window is the asking create's: a longer one still sees the first.
    const longer = await api.client.createTask({ ...taskRequest(), key: "debounce", uniqueWhile: windowOf(3600) });
    expect(longer).toMatchObject({ created: false, task: { id: after.task!.id } });
    expect(await idsOfKey("debounce")).toEqual([String(first.task!.id), String(after.task!.id)]);
  });
});

describe("unique_while refusals", () => {
  it.each([
    ["no key", {}, { uniqueWhile: unfinished }, "unique_while: needs a key"],
    ["a window under 1 s", { key: "k" }, { uniqueWhile: { mode: { case: "window" as const, value: { seconds: 0n, nanos: 500_000_000 } } } }, "unique_while.window"],
    ["a window over 366 d", { key: "k" }, { uniqueWhile: windowOf(367 * 86400) }, "unique_while.window"],
    ["unfinished false", { key: "k" }, { uniqueWhile: { mode: { case: "unfinished" as const, value: false } } }, "unique_while: must set"],
    ["no mode", { key: "k" }, { uniqueWhile: {} }, "unique_while: must set"],
  ])("refuses %s with InvalidArgument and writes nothing", async (_label, key, unique, message) => {
    const before = await rowCounts(api.database.db.kysely);
    await expectConnectError(api.client.createTask({ ...taskRequest(), ...key, ...unique }), Code.InvalidArgument, message);
    await expectConnectError(api.client.createTasks({ tasks: [taskRequest(), { ...taskRequest(), ...key, ...unique }] }), Code.InvalidArgument, `tasks[1].${message}`);
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
  });
});

describe("the SDK's submit", () => {
  it("passes uniqueWhile: a second submit of the key returns the first task", async () => {
    const client = createTaskClient({ address: api.server.url });
    const noop = { name: "noop", parameters: z.object({}) };
    const first = await client.submit(noop, {}, { key: "sdk-key", uniqueWhile: "unfinished" });
    const second = await client.submit(noop, {}, { key: "sdk-key", uniqueWhile: { windowMs: 60_000 } });
    expect(second.id).toBe(first.id);
    expect(await idsOfKey("sdk-key")).toEqual([String(first.id)]);
  });
});

describe("task create --unique-while", () => {
  it("prints whether it created the task or which task answered", async () => {
    const created = await cli("task", "create", "nightly", "--type", "noop", "--key", "cli-key", "--unique-while", "unfinished");
    expect(created.code).toBe(0);
    expect(created.stdout).toContain('created: no task of key "cli-key" held it (--unique-while unfinished)');
    const id = created.stdout.match(/ID\s+(\d+)/)![1];
    const answered = await cli("task", "create", "nightly", "--type", "noop", "--key", "cli-key", "--unique-while", "unfinished");
    expect(answered.code).toBe(0);
    expect(answered.stdout).toContain(`not created: task ${id} of key "cli-key" in queue default is unfinished (--unique-while); this is that task`);
    const windowed = await cli("task", "create", "nightly", "--type", "noop", "--key", "cli-key", "--unique-while", "10m", "-o", "json");
    expect(JSON.parse(windowed.stdout)).toMatchObject({ created: false, task: { id } });
    const bad = await cli("task", "create", "nightly", "--type", "noop", "--key", "cli-key", "--unique-while", "soon");
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('--unique-while: "soon" is not a duration');
  });
});
