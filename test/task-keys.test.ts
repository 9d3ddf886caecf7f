import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueueService } from "../src/gen/task/v1/queue_pb.js";
import { ScheduleService } from "../src/gen/task/v1/schedule_pb.js";
import { claimKeyedAttempts, claimNextAttempts, recordOutcomes } from "../src/store/lifecycle/index.js";
import { keyedRunTaskIdentifier, runTaskIdentifier } from "../src/store/jobs.js";
import { openDb } from "../src/store/db.js";
import { waitsByReason } from "../src/store/queues.js";
import { startTestApi, type TestApi } from "./helpers/api.js";

// Keys (issue 27): set at create or derived from the queue's template, refused when bad with
// nothing written; the keyed claim's turns between keys and its limit per key, in one process
// against the real database (test/key-processes.test.ts races real worker processes).
let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => api?.close());

const pool = () => api.database.db.pool;
const queues = () => createClient(QueueService, createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1" }));
const count = async (sql: string, values: unknown[] = []) => (await pool().query(sql, values)).rows[0].n as number;

async function refused(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ConnectError);
  expect((err as ConnectError).code).toBe(Code.InvalidArgument);
  return err as ConnectError;
}

async function createKeyed(queue: string, key: string, n: number, priority = 0): Promise<bigint[]> {
  const { tasks } = await api.client.createTasks({
    tasks: Array.from({ length: n }, (_, i) => ({ name: `${key}-${i}`, type: "shell", parameters: { command: "true" }, queue, key, priority })),
  });
  return tasks.map((t) => t.id);
}

describe("keys at create", () => {
  it("a key given at create is stored, shown, and files the task's job apart from unkeyed ones", async () => {
    const { task } = await api.client.createTask({ name: "k", type: "shell", parameters: { command: "true" }, queue: "keys-given", key: "acme" });
    expect(task!.key).toBe("acme");
    expect((await api.client.getTask({ id: task!.id })).task!.key).toBe("acme");
    const { rows } = await pool().query("select task_identifier from graphile_worker.jobs where key = $1", [`task:${task!.id}`]);
    expect(rows[0].task_identifier).toBe(keyedRunTaskIdentifier("keys-given", "shell"));
  });

  it("a queue's key template derives the key from the parameters; a key given at create wins", async () => {
    await queues().updateQueue({ name: "emails", settings: { keyTemplate: "{{params.command | domain}}" }, updateMask: { paths: ["key_template"] } });
    const { task } = await api.client.createTask({ name: "t", type: "shell", parameters: { command: "Someone@Example.COM" }, queue: "emails" });
    expect(task!.key).toBe("example.com");
    const { task: given } = await api.client.createTask({ name: "t", type: "shell", parameters: { command: "x@y.z" }, queue: "emails", key: "mine" });
    expect(given!.key).toBe("mine");
    expect((await queues().getQueue({ name: "emails" })).queue!.keyTemplate).toBe("{{params.command | domain}}");
  });

  it("a schedule's task template carries a key to each tick's task", async () => {
    const schedules = createClient(ScheduleService, createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1" }));
    const spec = { name: "keyed-nightly", cron: "0 3 * * *", task: { type: "shell", parameters: { command: "true" }, key: "tenant-9" } };
    const { schedule } = await schedules.createSchedule({ spec });
    expect(schedule!.spec!.task!.key).toBe("tenant-9");
    const { task } = await schedules.triggerSchedule({ name: "keyed-nightly" });
    expect(task!.key).toBe("tenant-9");
    await refused(schedules.createSchedule({ spec: { ...spec, name: "bad-key", task: { ...spec.task, key: "a\u0007" } } }));
  });

  it("bad keys, templates and limits are InvalidArgument naming the field, and nothing is written", async () => {
    const tasksBefore = await count("select count(*)::int as n from tasks");
    const err = await refused(api.client.createTask({ name: "t", type: "shell", parameters: { command: "true" }, key: "a\nb" }));
    expect(err.rawMessage).toContain("key");
    // The template needs params.to, which this task lacks: the whole batch is refused.
    await queues().updateQueue({ name: "by-to", settings: { keyTemplate: "host-{{params.to | lower}}" }, updateMask: { paths: ["key_template"] } });
    const missing = await refused(api.client.createTasks({
      tasks: [
        { name: "ok", type: "shell", parameters: { command: "true" }, queue: "by-to", key: "given" },
        { name: "bad", type: "shell", parameters: { command: "true" }, queue: "by-to" },
      ],
    }));
    expect(missing.rawMessage).toContain("tasks[1].parameters.to");
    expect(await count("select count(*)::int as n from tasks")).toBe(tasksBefore);

    const settingsBefore = (await pool().query("select key_template, key_concurrency, key_limits from queues where name = 'by-to'")).rows[0];
    for (const [settings, path, field] of [
      [{ keyTemplate: "{{ process.env.HOME }}" }, "key_template", "settings.key_template"],
      [{ keyTemplate: "{{params.to | exec}}" }, "key_template", "settings.key_template"],
      [{ keyTemplate: "{{params.to" }, "key_template", "settings.key_template"],
      [{ keyConcurrency: -1 }, "key_concurrency", "settings.key_concurrency"],
      [{ keyLimits: { acme: -2 } }, "key_limits", "settings.key_limits"],
    ] as const) {
      const e = await refused(queues().updateQueue({ name: "by-to", settings, updateMask: { paths: [path] } }));
      expect(e.rawMessage).toContain(field);
    }
    expect((await pool().query("select key_template, key_concurrency, key_limits from queues where name = 'by-to'")).rows[0]).toEqual(settingsBefore);
    expect(await count("select count(*)::int as n from tasks")).toBe(tasksBefore);
  });
});

describe("the keyed claim", () => {
  it("takes no keyed task in the unkeyed batch", async () => {
    await createKeyed("batch-only", "acme", 3);
    // Even named with the keyed identifier, the batch refuses them in SQL.
    const identifiers = [runTaskIdentifier("batch-only", "shell"), keyedRunTaskIdentifier("batch-only", "shell")];
    const claimed = await claimNextAttempts(api.database.db, "w-batch", { identifiers, forbiddenFlags: [], limit: 10 });
    expect(claimed).toEqual([]);
    expect(await count("select count(*)::int as n from tasks where queue = 'batch-only' and status = 'queued'")).toBe(3);
  });

  it("keys take turns: 20 tasks of B created after 2,000 of A all start within the next 40 claims", async () => {
    await createKeyed("fair", "a", 2000);
    // A's backlog has started draining when B arrives.
    const first = await claimKeyedAttempts(api.database.db, "w-fair", { queues: ["fair"], types: ["shell"], limit: 100 });
    expect(first.every((t) => t.key === "a")).toBe(true);
    await createKeyed("fair", "b", 20);
    const next: string[] = [];
    for (let i = 0; i < 4; i++) {
      next.push(...(await claimKeyedAttempts(api.database.db, "w-fair", { queues: ["fair"], types: ["shell"], limit: 10 })).map((t) => t.key!));
    }
    expect(next.filter((k) => k === "b")).toHaveLength(20);
    // Priority still wins: a higher-priority task of A goes before every turn of B.
    await createKeyed("fair", "b", 5);
    const [urgent] = await createKeyed("fair", "a", 1, 5);
    const [top] = await claimKeyedAttempts(api.database.db, "w-fair", { queues: ["fair"], types: ["shell"], limit: 1 });
    expect(top!.id).toBe(String(urgent));
  });

  it("a key at its limit waits QUEUED without burning an attempt, and does not block the other keys", async () => {
    await queues().updateQueue({ name: "per-key", settings: { keyConcurrency: 2, keyLimits: { big: 3 } }, updateMask: { paths: ["key_concurrency", "key_limits"] } });
    await createKeyed("per-key", "a", 10);
    await createKeyed("per-key", "big", 10);
    await createKeyed("per-key", "c", 1);
    const claim = (limit: number) => claimKeyedAttempts(api.database.db, "w-key", { queues: ["per-key"], types: ["shell"], limit, keyLimited: true });
    const got = await claim(20);
    const byKey = (rows: { key: string | null }[]) => rows.reduce<Record<string, number>>((m, r) => ({ ...m, [r.key!]: (m[r.key!] ?? 0) + 1 }), {});
    expect(byKey(got)).toEqual({ a: 2, big: 3, c: 1 });
    expect(await claim(20)).toEqual([]);
    expect(await count("select count(*)::int as n from tasks where queue = 'per-key' and status = 'queued' and attempts = 0")).toBe(15);
    // A task over its limit says why it waits.
    const { rows } = await pool().query("select id from tasks where queue = 'per-key' and key = 'a' and status = 'queued' limit 1");
    expect((await api.client.getTask({ id: BigInt(rows[0].id) })).task!.waitReason).toBe("key a at its limit 2");
    // /metrics counts them by reason.
    expect((await waitsByReason(api.database.db.kysely)).filter((w) => w.queue === "per-key")).toEqual([{ queue: "per-key", reason: "key_limit", waiting: 15 }]);
    const { queue } = await queues().getQueue({ name: "per-key" });
    expect(queue!.keyUse.find((k) => k.key === "big")).toMatchObject({ running: 3n, waiting: 7n, limit: 3, waitReason: "key big at its limit 3" });
    // c has nothing waiting: nothing holds it.
    expect(queue!.keyUse.find((k) => k.key === "c")).toMatchObject({ running: 1n, waiting: 0n, waitReason: "" });
    // One of a's attempts ends: exactly one more of a starts.
    const ended = got.find((t) => t.key === "a")!;
    await recordOutcomes(api.database.db, [{ taskId: ended.id, attempt: ended.attempts, workerId: "w-key", outcome: { kind: "succeeded", result: {}, details: "done" } }]);
    const after = await claim(20);
    expect(byKey(after)).toEqual({ a: 1 });
    // The batch and the unkeyed claim refuse them in SQL whatever the caller asks.
    expect(await claimKeyedAttempts(api.database.db, "w-key", { queues: ["per-key"], types: ["shell"], limit: 20 })).toEqual([]);
  });

  it("in a queue with a concurrency limit too, both limits hold and a full key does not block the others", async () => {
    await queues().updateQueue({ name: "both", settings: { concurrency: 3, keyConcurrency: 2 }, updateMask: { paths: ["concurrency", "key_concurrency"] } });
    await createKeyed("both", "a", 5);
    await createKeyed("both", "b", 5);
    const one = () => claimKeyedAttempts(api.database.db, "w-both", { queues: ["both"], types: ["shell"], limit: 1, keyLimited: true, queueLimited: true });
    const keys: string[] = [];
    for (let i = 0; i < 6; i++) keys.push(...(await one()).map((t) => t.key!));
    // Turns: a, b, then a again (a's second turn) would make a 2 and b 1; the queue's limit stops at 3.
    expect(keys).toHaveLength(3);
    expect(keys.filter((k) => k === "a").length).toBeLessThanOrEqual(2);
    expect(keys.filter((k) => k === "b").length).toBeLessThanOrEqual(2);
    // A batch or an unkeyed limited claim never takes them.
    expect(await claimNextAttempts(api.database.db, "w-both", { identifiers: [runTaskIdentifier("both", "shell"), keyedRunTaskIdentifier("both", "shell")], forbiddenFlags: [], limit: 1, limitedQueue: "both" })).toEqual([]);
    // The queue's limit raised: key a is full at 2 and first in turn, b still starts.
    await queues().updateQueue({ name: "both", settings: { concurrency: 10 }, updateMask: { paths: ["concurrency"] } });
    const running = async (key: string) => count("select count(*)::int as n from tasks where queue = 'both' and key = $1 and status = 'running'", [key]);
    for (let i = 0; i < 4; i++) await one();
    expect([await running("a"), await running("b")]).toEqual([2, 2]);
  });

  it("the keyed claim statements keep one generic plan per limit (their limits are literals, as the batch's)", async () => {
    await queues().updateQueue({ name: "plans-limited", settings: { keyConcurrency: 1 }, updateMask: { paths: ["key_concurrency"] } });
    // One connection, so pg_prepared_statements (per session) sees every call.
    const db = openDb({ connectionString: api.database.url, max: 1 }, api.database.logger);
    try {
      for (let call = 0; call < 12; call++) {
        await createKeyed("plans", `k${call % 3}`, 2);
        await createKeyed("plans-limited", `k${call}`, 1);
        await claimKeyedAttempts(db, "w-plans", { queues: ["plans"], types: ["shell"], limit: 3 });
        await claimKeyedAttempts(db, "w-plans", { queues: ["plans-limited"], types: ["shell"], limit: 3, keyLimited: true });
      }
      const { rows } = await db.pool.query("select name, generic_plans::int, custom_plans::int from pg_prepared_statements where name like 'task_claim_keyed%' order by name");
      // The batch's keyed claim keeps its generic plan. The key-limited one's choice depends on the
      // statistics of the moment (a suite run once planned it custom all 12 times): it is only required
      // to be one prepared statement, not re-prepared per call.
      expect(rows.map((r) => r.name)).toEqual(["task_claim_keyed_3_1", "task_claim_keyed_limited_3"]);
      expect(rows[0]).toEqual({ name: "task_claim_keyed_3_1", generic_plans: 7, custom_plans: 5 });
      expect(rows[1].generic_plans + rows[1].custom_plans).toBe(12);
    } finally {
      await db.close();
    }
  });
});
