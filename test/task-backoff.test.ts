import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { durationFromMs, durationToMs } from "../src/api/convert.js";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { startTestApiWithWorkers, type TestApiWithWorkers } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";
import { createTask, expectConnectError, rowCounts, taskRequest, taskRow } from "./helpers/factory.js";
import { waitFor } from "./helpers/wait.js";

let api: TestApiWithWorkers;
beforeAll(async () => {
  // The workers' own policy is fast: 50ms base, 400ms cap (fastWorkerConfig).
  api = await startTestApiWithWorkers();
});
afterAll(() => api?.close());

const db = () => api.database.db.kysely;
const backoff = (baseMs: number, maxMs: number) => ({ base: durationFromMs(baseMs), max: durationFromMs(maxMs) });

/** The delay the first failure scheduled: run_at of the retry minus when it was recorded. */
async function firstRetryDelay(id: bigint): Promise<number> {
  const row = await waitFor(async () => {
    const r = await taskRow(db(), id);
    return r.status === "retrying" && r;
  }, `task ${id} retrying`);
  return row.run_at.getTime() - row.updated_at.getTime();
}

describe("per-task backoff", () => {
  it("rejects a bad backoff with InvalidArgument naming the field, and writes nothing", async () => {
    const before = await rowCounts(db());
    const cases: [ReturnType<typeof backoff> | Record<string, unknown>, RegExp][] = [
      [backoff(0, 1_000), /backoff\.base/],
      [backoff(2_000, 1_000), /backoff\.max: must be at least backoff\.base/],
      [{ base: durationFromMs(1_000) }, /backoff\.max: is required/],
      [backoff(1_000, 25 * 3600 * 1000), /backoff\.max/],
      [{ base: { seconds: 0n, nanos: 1_500_000 }, max: durationFromMs(10) }, /backoff\.base/],
      [{ base: { seconds: -1n, nanos: 0 }, max: durationFromMs(10) }, /backoff\.base/],
    ];
    for (const [value, message] of cases) {
      await expectConnectError(api.client.createTask({ ...taskRequest(), backoff: value } as never), Code.InvalidArgument, message);
    }
    expect(await rowCounts(db())).toEqual(before);
  });

  it("a task's own backoff replaces the workers' policy; without one the configured policy applies", async () => {
    const own = await createTask(api.client, { parameters: { fail: "boom" }, maxAttempts: 2, backoff: backoff(4_000, 4_000) } as never);
    expect(own.backoff && [durationToMs(own.backoff.base!), durationToMs(own.backoff.max!)]).toEqual([4_000, 4_000]);
    const plain = await createTask(api.client, { parameters: { fail: "boom" }, maxAttempts: 2 });
    expect(plain.backoff).toBeUndefined();
    // Equal jitter: between half and all of min(max, base). The delay the worker chose is in the
    // history; the stored run_at is that far after the moment it was chosen, which the row's
    // updated_at (written a little later, by a busy machine's clock) can only bring closer.
    const ownDelay = await firstRetryDelay(own.id);
    expect(ownDelay).toBeGreaterThan(0);
    expect(ownDelay).toBeLessThanOrEqual(4_100);
    const { history } = await api.client.getTaskHistory({ id: own.id });
    const chosen = /retrying in ([\d.]+)(ms|s)\b/.exec(history.find((h) => h.status === TaskStatus.RETRYING)?.details ?? "");
    expect(chosen, "the retry's details name its delay").not.toBeNull();
    const chosenMs = Number(chosen![1]) * (chosen![2] === "s" ? 1_000 : 1);
    expect(chosenMs).toBeGreaterThanOrEqual(2_000);
    expect(chosenMs).toBeLessThanOrEqual(4_000);
    const plainDelay = await waitFor(async () => {
      const { history } = await api.client.getTaskHistory({ id: plain.id });
      return history.find((h) => h.status === TaskStatus.RETRYING)?.details;
    }, "plain retry recorded");
    expect(plainDelay).toMatch(/retrying in \d+ms/);
    const { task } = await api.client.getTask({ id: own.id });
    expect(task?.backoff && durationToMs(task.backoff.base!)).toBe(4_000);
  });

  it("is part of the idempotent request, and the CLI sets it", async () => {
    const key = `backoff-${Date.now()}`;
    await api.client.createTask({ ...taskRequest({ name: "same", idempotencyKey: key }), backoff: backoff(100, 200) } as never);
    await expectConnectError(
      api.client.createTask({ ...taskRequest({ name: "same", idempotencyKey: key }), backoff: backoff(100, 300) } as never),
      Code.AlreadyExists,
    );
    const out = await runCli(["--address", api.server.url, "-o", "json", "task", "create", "cli-backoff", "--type", "noop", "--backoff-base", "2s", "--backoff-max", "1m"]);
    expect(out.code, out.stderr).toBe(0);
    expect(JSON.parse(out.stdout).task.backoff).toEqual({ base: "2s", max: "60s" });
    const half = await runCli(["--address", api.server.url, "task", "create", "x", "--type", "noop", "--backoff-base", "2s"]);
    expect(half.code).not.toBe(0);
    expect(half.stderr).toMatch(/--backoff-base and --backoff-max go together/);
  });
});
