import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RateLimitService } from "../src/gen/task/v1/limit_pb.js";
import { QueueService } from "../src/gen/task/v1/queue_pb.js";
import { ageKeyedTasks } from "../src/store/jobs.js";
import { claimKeyedAttempts, claimRateLimitedAttempt } from "../src/store/lifecycle/index.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";
import { expectConnectError } from "./helpers/factory.js";

// Issue 27 items 3 and 4, in one process against the real database: a key's weight in the turns,
// the units a task takes from its rate limit (validated, waited for without being passed), keys
// taking turns within a rate limit, and keyed tasks aging as unkeyed ones do.
// test/flow-processes.test.ts runs weights and units with real worker processes.
let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => api?.close());

const pool = () => api.database.db.pool;
const transport = () => createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1" });
const queues = () => createClient(QueueService, transport());
const limits = () => createClient(RateLimitService, transport());
const cli = (...args: string[]) => runCli(["--address", api.server.url, ...args]);
const count = async (sql: string, values: unknown[] = []) => (await pool().query(sql, values)).rows[0].n as number;

async function createKeyed(queue: string, key: string, n: number, extra: { priority?: number; units?: number } = {}): Promise<bigint[]> {
  const { tasks } = await api.client.createTasks({
    tasks: Array.from({ length: n }, (_, i) => ({ name: `${key}-${i}`, type: "shell", parameters: { command: "true" }, queue, key, ...extra })),
  });
  return tasks.map((t) => t.id);
}
const byKey = (rows: { key: string | null }[]) => rows.reduce<Record<string, number>>((m, r) => ({ ...m, [r.key ?? ""]: (m[r.key ?? ""] ?? 0) + 1 }), {});

describe("weighted turns", () => {
  it("key_weights is validated (InvalidArgument, nothing changed), set by task-cli queue set --key-weight, shown by queue get", async () => {
    const bad: Record<string, number>[] = [{ heavy: 0 }, { heavy: 1001 }, { "bad\nkey": 2 }];
    for (const keyWeights of bad) {
      await expectConnectError(queues().updateQueue({ name: "wq", settings: { keyWeights }, updateMask: { paths: ["key_weights"] } }), Code.InvalidArgument, /key_weights/);
    }
    expect(await count("select count(*)::int as n from queues where name = 'wq'")).toBe(0);
    const set = await cli("queue", "set", "wq", "--key-weight", "heavy=3", "--key-weight", "mid=2");
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toMatch(/Key weights\s+heavy=3 mid=2/);
    expect((await queues().getQueue({ name: "wq" })).queue!.keyWeights).toEqual({ heavy: 3, mid: 2 });
    expect((await cli("queue", "set", "wq", "--key-weight", "x=0")).code).not.toBe(0);
    expect((await cli("queue", "get", "wq")).stdout).toMatch(/Key weights\s+heavy=3 mid=2/);
  });

  it("a key of weight 3 starts 3 tasks for each of a weight-1 key while both wait; without the weight they alternate", async () => {
    await queues().updateQueue({ name: "weighted", settings: { keyWeights: { heavy: 3 } }, updateMask: { paths: ["key_weights"] } });
    for (const queue of ["weighted", "unweighted"]) {
      await createKeyed(queue, "heavy", 60);
      await createKeyed(queue, "light", 60);
    }
    const first40 = async (queue: string) => {
      const got = [];
      for (let i = 0; i < 4; i++) got.push(...(await claimKeyedAttempts(api.database.db, "w-weights", { queues: [queue], types: ["shell"], limit: 10 })));
      return byKey(got);
    };
    const weighted = await first40("weighted");
    expect(weighted.heavy).toBeGreaterThanOrEqual(29);
    expect(weighted.heavy).toBeLessThanOrEqual(31);
    expect(await first40("unweighted")).toEqual({ heavy: 20, light: 20 });
  });
});

describe("units of a rate limit", () => {
  it("units are validated: 1..1,000,000 and at most the burst of the task's limit, else InvalidArgument and nothing written", async () => {
    await limits().setRateLimit({ limit: { name: "u-lim", rate: 1, period: { seconds: 3600n }, burst: 5, queue: "uq" } });
    const base = { name: "u", type: "shell", parameters: { command: "true" }, queue: "uq" };
    await expectConnectError(api.client.createTask({ ...base, units: -1 }), Code.InvalidArgument, /units/);
    await expectConnectError(api.client.createTask({ ...base, units: 1_000_001 }), Code.InvalidArgument, /units/);
    await expectConnectError(api.client.createTask({ ...base, units: 6 }), Code.InvalidArgument, /units: must be at most 5, the burst of rate limit u-lim/);
    await expectConnectError(
      api.client.createTasks({ tasks: [{ ...base, units: 2 }, { ...base, units: 6 }] }),
      Code.InvalidArgument,
      /tasks\[1\]\.units/,
    );
    expect(await count("select count(*)::int as n from tasks where queue = 'uq'")).toBe(0);
    // Outside every limit units are not checked against a burst (a limit set later applies to them).
    const { task: free } = await api.client.createTask({ ...base, queue: "uq-free", units: 50 });
    expect(free!.units).toBe(50);
    const { task } = await api.client.createTask({ ...base, units: 0 });
    expect(task!.units).toBe(1);
    const made = await cli("task", "create", "big", "--type", "shell", "--param", "command=echo", "--queue", "uq", "--units", "5");
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toMatch(/Units\s+5/);
  });

  it("a task waits for all its units, and the tasks after it do not pass it; it says what it waits for", async () => {
    // 1 unit an hour: nothing refills during the test. The bucket starts full, at the burst (5).
    await limits().setRateLimit({ limit: { name: "hol", rate: 1, period: { seconds: 3600n }, burst: 5, queue: "hol" } });
    const [a] = await createKeyed("hol", "k", 1, { units: 3 });
    const [b] = await createKeyed("hol", "k", 1, { units: 3 });
    const [c] = await createKeyed("hol", "k", 1, { units: 1 });
    const claim = () => claimRateLimitedAttempt(api.database.db, "w-hol", { limit: "hol", queues: ["hol"], types: ["shell"] });
    expect((await claim())?.id).toBe(String(a));
    // 2 units left: b needs 3, and c (1 unit) does not start before it.
    expect(await claim()).toBeUndefined();
    expect(await count("select count(*)::int as n from tasks where id = any($1::bigint[]) and status = 'queued' and attempts = 0", [[String(b), String(c)]])).toBe(2);
    expect((await api.client.getTask({ id: b! })).task!.waitReason).toMatch(/^rate limit hol: 3 units in 3\d\d\d\.\d s$/);
    // A burst lowered below a waiting task's units: it says it cannot start.
    await limits().setRateLimit({ limit: { name: "hol", rate: 1, period: { seconds: 3600n }, burst: 2, queue: "hol" } });
    expect((await api.client.getTask({ id: b! })).task!.waitReason).toBe("rate limit hol: needs 3 units, burst 2");
  });
});

describe("units of a rate limit per key", () => {
  it("a key whose first task lacks its units waits without blocking the other keys, and its smaller tasks do not pass it", async () => {
    await limits().setRateLimit({ limit: { name: "pk", rate: 1, period: { seconds: 3600n }, burst: 2, perKey: true, queue: "pkq" } });
    const [a1] = await createKeyed("pkq", "a", 1, { units: 1 });
    const [a2] = await createKeyed("pkq", "a", 1, { units: 2 });
    const [a3] = await createKeyed("pkq", "a", 1, { units: 1 });
    await createKeyed("pkq", "b", 2, { units: 1 });
    const claim = () => claimRateLimitedAttempt(api.database.db, "w-pk", { limit: "pk", queues: ["pkq"], types: ["shell"], perKey: true });
    const started = [];
    for (let one = await claim(); one; one = await claim()) started.push(one);
    // a: 1 unit taken, 1 left, its next task needs 2: a waits (a3 does not pass it); b takes both of its own.
    expect(started.map((t) => t.key)).toEqual(["a", "b", "b"]);
    expect(started[0]!.id).toBe(String(a1));
    expect(await count("select count(*)::int as n from tasks where id = any($1::bigint[]) and status = 'queued'", [[String(a2), String(a3)]])).toBe(2);
  });
});

describe("keys take turns within a rate limit", () => {
  it("20 tasks of B created after 100 of A all start within the next 40 units, not after A's backlog", async () => {
    await limits().setRateLimit({ limit: { name: "turns", rate: 10_000, period: { seconds: 1n }, burst: 10_000, queue: "rturns" } });
    await createKeyed("rturns", "a", 100);
    const claim = () => claimRateLimitedAttempt(api.database.db, "w-rturns", { limit: "turns", queues: ["rturns"], types: ["shell"] });
    // A has started when B arrives.
    for (let i = 0; i < 5; i++) expect((await claim())?.key).toBe("a");
    await createKeyed("rturns", "b", 20);
    const next = [];
    for (let i = 0; i < 40; i++) next.push((await claim())!);
    expect(byKey(next)).toEqual({ a: 20, b: 20 });
    // Priority still wins between priorities.
    const [urgent] = await createKeyed("rturns", "a", 1, { priority: 5 });
    expect((await claim())?.id).toBe(String(urgent));
  });
});

describe("aging of keyed tasks", () => {
  it("a keyed task of low priority ages as an unkeyed one does, and then starts before fresh higher-priority work", async () => {
    const [low] = await createKeyed("aging", "slow", 1, { priority: -5 });
    await createKeyed("aging", "busy", 20);
    // Due for 10 minutes: at the default aging (+1 per minute) its effective priority is -5 + 10 = 5.
    await pool().query("update tasks set run_at = now() - interval '10 minutes' where id = $1", [String(low)]);
    const claim = () => claimKeyedAttempts(api.database.db, "w-aging", { queues: ["aging"], types: ["shell"], limit: 1 });
    expect((await claim())[0]!.key).toBe("busy");
    expect(await ageKeyedTasks(api.database.db.kysely, 60_000)).toBeGreaterThanOrEqual(1);
    expect(await count("select age_boost::int as n from tasks where id = $1", [String(low)])).toBe(10);
    // Only improving: a second pass changes nothing of it.
    await ageKeyedTasks(api.database.db.kysely, 60_000);
    expect(await count("select age_boost::int as n from tasks where id = $1", [String(low)])).toBe(10);
    expect((await claim())[0]!.id).toBe(String(low));
  });

  it("in a queue with key limits too", async () => {
    await queues().updateQueue({ name: "aging-lim", settings: { keyConcurrency: 5 }, updateMask: { paths: ["key_concurrency"] } });
    const [low] = await createKeyed("aging-lim", "slow", 1, { priority: -5 });
    await createKeyed("aging-lim", "busy", 3);
    await pool().query("update tasks set run_at = now() - interval '10 minutes' where id = $1", [String(low)]);
    await ageKeyedTasks(api.database.db.kysely, 60_000);
    const [first] = await claimKeyedAttempts(api.database.db, "w-aging", { queues: ["aging-lim"], types: ["shell"], limit: 1, keyLimited: true });
    expect(first!.id).toBe(String(low));
  });
});
