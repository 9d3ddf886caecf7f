import { setTimeout as sleep } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.js";
import { TaskControlService } from "../src/gen/task/v1/control_pb.js";
import { RETENTION_TASK } from "../src/worker/maintenance.js";
import type { Workers } from "../src/worker/runner.js";
import { deleteExpiredTasks } from "../src/store/retention.js";
import { insertSyntheticFinishedTasks } from "../scripts/bench/synthetic-tasks.js";
import { countTasksByTypeAndStatus } from "../src/store/task-counts.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";
import { createTask, expectConnectError, taskRequest } from "./helpers/factory.js";
import { waitFor } from "./helpers/wait.js";
import { startTestWorkers } from "./helpers/workers.js";

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => {
  await api?.close();
});

const db = () => api.database.db.kysely;
const DAY = 86_400_000;

async function expectCountsExact() {
  const { rows } = await sql<{ type: string; status: string; n: string }>`select type, status, count(*) as n from tasks group by type, status`.execute(db());
  const key = (g: { type: string; status: string }) => `${g.type}/${g.status}`;
  const real = rows.map((r) => ({ type: r.type, status: r.status, count: Number(r.n) })).sort((a, b) => key(a).localeCompare(key(b)));
  const kept = (await countTasksByTypeAndStatus(db())).sort((a, b) => key(a).localeCompare(key(b)));
  expect(kept).toEqual(real);
}

async function orphans(): Promise<{ history: number; logs: number }> {
  const { rows } = await sql<{ history: string; logs: string }>`
    select (select count(*) from task_history h where not exists (select 1 from tasks t where t.id = h.task_id)) as history,
           (select count(*) from task_logs l where not exists (select 1 from tasks t where t.id = l.task_id)) as logs`.execute(db());
  return { history: Number(rows[0]!.history), logs: Number(rows[0]!.logs) };
}

/**
 * Finished tasks older than the cutoff for their outcome (as of `at`, default now): what retention
 * must have removed.
 */
async function expired(ages: { succeeded: number; failed: number }, at?: Date): Promise<number> {
  const { rows } = await sql<{ n: string }>`
    select count(*) as n from tasks
    where (status = 'succeeded' and finished_at < coalesce(${at ?? null}::timestamptz, now()) - make_interval(secs => ${ages.succeeded / 1000}))
       or (status = 'failed' and finished_at < coalesce(${at ?? null}::timestamptz, now()) - make_interval(secs => ${ages.failed / 1000}))`.execute(db());
  return Number(rows[0]!.n);
}

describe("retention", () => {
  it("deletes expired finished tasks with their history and logs, in batches, while workers insert and run tasks", async () => {
    // 3,000 finished tasks spread over the last 30 days (90% succeeded, 7% failed, 3% cancelled),
    // with output lines.
    await insertSyntheticFinishedTasks(db(), 1, 3_000, 3_000);
    await sql`insert into task_logs (task_id, first_seq, last_seq, attempt, streams, lines) select id, 1, 1, 1, 'o', 'old line' from tasks where name like 'bench-%'`.execute(db());
    const before = await sql<{ status: string; n: string }>`select status, count(*) as n from tasks group by status`.execute(db());
    const cancelledBefore = Number(before.rows.find((r) => r.status === "cancelled")!.n);
    // Cutoffs between two synthetic tasks (they are 30 days / 3,000 = 864 s apart, one of them 2 s
    // from 10 days old): none reaches its cutoff while the test runs, after the pass left it.
    const ages = { succeeded: 10 * DAY + 7 * 60_000, failed: 20 * DAY + 7 * 60_000 };
    expect(await expired(ages)).toBeGreaterThan(1_000);

    const workers = await startTestWorkers(api.database, { workerConcurrency: 4 });
    const created: bigint[] = [];
    let inserting = true;
    const inserter = (async () => {
      while (inserting) {
        const { tasks } = await api.client.createTasks({ tasks: Array.from({ length: 50 }, () => taskRequest({ parameters: { sleep_ms: 2 } })) });
        created.push(...tasks.map((t) => t.id));
        await sleep(20);
      }
    })();
    // The pass starts after this moment, so it deletes at least what had expired by then. (A task
    // that finished just under 10 days ago expires while the test waits; the pass need not see it.)
    const { rows: [passStart] } = await sql<{ at: Date }>`select now() as at`.execute(db());
    try {
      // Small batches, so the pass takes many statements interleaved with the inserts.
      const result = await deleteExpiredTasks(db(), { succeededMs: ages.succeeded, failedMs: ages.failed, cancelledMs: 0 }, 100);
      expect(result.batches).toBeGreaterThan(10);
      expect(result.succeeded).toBeGreaterThan(1_000);
      expect(result.failed).toBeGreaterThan(0);
      expect(result.cancelled).toBe(0);
    } finally {
      inserting = false;
      await inserter;
    }
    await waitFor(async () => {
      const { rows } = await sql<{ n: string }>`select count(*) as n from tasks where status not in ('succeeded', 'failed', 'cancelled')`.execute(db());
      return Number(rows[0]!.n) === 0;
    }, "new tasks finished", 60_000);
    await workers.stop();

    expect(await expired(ages, passStart!.at)).toBe(0);
    // CANCELLED was kept (age 0), and every task created meanwhile is intact and finished.
    const after = await sql<{ n: string }>`select count(*) as n from tasks where status = 'cancelled'`.execute(db());
    expect(Number(after.rows[0]!.n)).toBe(cancelledBefore);
    const { rows: fresh } = await sql<{ n: string }>`select count(*) as n from tasks where id = any(${created.map(String)}::bigint[]) and status = 'succeeded'`.execute(db());
    expect(Number(fresh[0]!.n)).toBe(created.length);
    // Tasks newer than their outcome's age are still there.
    const { rows: young } = await sql<{ n: string }>`select count(*) as n from tasks where name like 'bench-%' and status = 'succeeded'`.execute(db());
    expect(Number(young[0]!.n)).toBeGreaterThan(500);
    expect(await orphans()).toEqual({ history: 0, logs: 0 });
    await expectCountsExact();
  }, 180_000);

  it("the workers' cron task applies the configured ages", async () => {
    await insertSyntheticFinishedTasks(db(), 1, 300, 300);
    const workers = await startTestWorkers(api.database, { retainSucceededMs: DAY, retainFailedMs: DAY, retainCancelledMs: DAY, retentionBatchSize: 50 });
    try {
      expect(await expired({ succeeded: DAY, failed: DAY })).toBeGreaterThan(0);
      // Expired as of now: the pass starts after this, so it deletes at least these. (A task that
      // finished just under a day ago expires while the test waits; the pass need not see it.)
      const { rows: [expiredBefore] } = await sql<{ cutoff: Date }>`select now() - interval '1 day' as cutoff`.execute(db());
      const cutoff = expiredBefore!.cutoff;
      // What the cron schedule enqueues, enqueued now.
      await sql`select graphile_worker.add_job(${RETENTION_TASK}, '{}'::json)`.execute(db());
      await waitFor(async () => {
        const { rows } = await sql<{ n: string }>`select count(*) as n from tasks where status in ('succeeded', 'failed', 'cancelled') and finished_at < ${cutoff}`.execute(db());
        return Number(rows[0]!.n) === 0;
      }, "expired tasks deleted by the cron task");
    } finally {
      await workers.stop();
    }
    expect(await orphans()).toEqual({ history: 0, logs: 0 });
    await expectCountsExact();
  });

  it("DeleteTask removes a finished task and refuses anything else; bad retention settings are refused", async () => {
    const control = createClient(TaskControlService, createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1" }));
    const waiting = await createTask(api.client, { runAt: { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600), nanos: 0 } as never });
    await expectConnectError(control.deleteTask({ id: waiting.id }), Code.FailedPrecondition, /it is queued/);
    await expectConnectError(control.deleteTask({ id: 0n }), Code.InvalidArgument);
    await expectConnectError(control.deleteTask({ id: 987_654_321n }), Code.NotFound);
    expect((await api.client.getTask({ id: waiting.id })).task?.id).toBe(waiting.id);
    await api.client.cancelTask({ id: waiting.id });
    const out = await runCli(["--address", api.server.url, "task", "delete", "--id", String(waiting.id)]);
    expect(out).toMatchObject({ code: 0, stdout: `task ${waiting.id} deleted\n` });
    await expectConnectError(api.client.getTask({ id: waiting.id }), Code.NotFound);
    await expectConnectError(api.client.getTaskHistory({ id: waiting.id }), Code.NotFound);

    expect(() => loadConfig({}, { TASK_RETAIN_SUCCEEDED_MS: "-1" })).toThrow(ConfigError);
    expect(() => loadConfig({}, { TASK_RETAIN_FAILED_MS: "soon" })).toThrow(/TASK_RETAIN_FAILED_MS/);
    const defaults = loadConfig({}, {});
    expect([defaults.retainSucceededMs, defaults.retainFailedMs, defaults.retainCancelledMs]).toEqual([7 * DAY, 30 * DAY, 30 * DAY]);
    const bad = await runCli(["serve", "--retain-succeeded", "a week"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--retain-succeeded/);
  });
});
