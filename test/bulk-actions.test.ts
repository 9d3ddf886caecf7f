import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkTaskHistory } from "../scripts/chaos/check-history.js";
import { BulkAction, TaskControlService } from "../src/gen/task/v1/control_pb.js";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import type { Workers } from "../src/worker/runner.js";
import { countTasksByTypeAndStatus } from "../src/store/task-counts.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";
import { createTask, expectConnectError, rowCounts, taskRequest } from "./helpers/factory.js";
import { waitFor } from "./helpers/wait.js";
import { startTestWorkers } from "./helpers/workers.js";

let api: TestApi;
let control: Client<typeof TaskControlService>;
beforeAll(async () => {
  api = await startTestApi();
  control = createClient(TaskControlService, createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1" }));
});
afterAll(async () => {
  await api?.close();
});

const db = () => api.database.db.kysely;
const cli = (...args: string[]) => runCli(["--address", api.server.url, ...args]);
const later = () => timestampFromDate(new Date(Date.now() + 3_600_000));

/** Every task's history through the chaos checker; returns the problems. */
async function historyProblems(): Promise<string[]> {
  const { rows } = await sql<{ id: string; status: string; attempts: number; history: { status: string; attempt: number }[] }>`
    select t.id, t.status, t.attempts,
      (select json_agg(json_build_object('status', h.status, 'attempt', h.attempt) order by h.id) from task_history h where h.task_id = t.id) as history
    from tasks t
  `.execute(db());
  return rows.flatMap((r) => checkTaskHistory({ id: String(r.id), status: r.status, attempts: r.attempts, history: r.history ?? [] }));
}

/** The maintained counts equal a real count, group by group. */
async function expectCountsExact() {
  const { rows } = await sql<{ type: string; status: string; n: string }>`select type, status, count(*) as n from tasks group by type, status`.execute(db());
  const real = rows.map((r) => ({ type: r.type, status: r.status, count: Number(r.n) })).sort((a, b) => `${a.type}${a.status}`.localeCompare(`${b.type}${b.status}`));
  const kept = (await countTasksByTypeAndStatus(db())).sort((a, b) => `${a.type}${a.status}`.localeCompare(`${b.type}${b.status}`));
  expect(kept).toEqual(real);
}

describe("bulk actions", () => {
  it("refuses bad selections and actions with InvalidArgument and writes nothing", async () => {
    const waiting = await createTask(api.client, { runAt: later() });
    const before = await rowCounts(db());
    const bad = async (req: Parameters<typeof control.bulkTasks>[0], field: RegExp) => {
      const err = await expectConnectError(control.bulkTasks(req), Code.InvalidArgument);
      expect(err.message).toMatch(field);
    };
    await bad({ action: BulkAction.CANCEL, selection: {} }, /selection: names no tasks/);
    await bad({ action: BulkAction.CANCEL, selection: { namePrefix: "x".repeat(201) } }, /selection\.name_prefix: must be at most 200 characters/);
    await bad({ action: BulkAction.CANCEL }, /selection: is required/);
    await bad({ action: BulkAction.UNSPECIFIED, selection: { all: true } }, /action/);
    await bad({ action: 99 as BulkAction, selection: { all: true } }, /action/);
    await bad({ action: BulkAction.CANCEL, selection: { statuses: [42 as TaskStatus] } }, /selection.statuses\[0\]/);
    await bad({ action: BulkAction.CANCEL, selection: { ids: [1n], statuses: [TaskStatus.QUEUED] } }, /cannot be combined/);
    await bad({ action: BulkAction.CANCEL, selection: { ids: [0n] } }, /selection.ids\[0\]/);
    await bad({ action: BulkAction.CANCEL, selection: { types: [""] } }, /selection.types\[0\]/);
    await bad({ action: BulkAction.CANCEL, selection: { queues: ["Not A Queue"] } }, /selection.queues\[0\]/);
    await bad({ action: BulkAction.RETRY, selection: { all: true }, reason: "why" }, /reason/);
    await bad(
      { action: BulkAction.DELETE, selection: { createdAfter: timestampFromDate(new Date()), createdBefore: timestampFromDate(new Date(Date.now() - 1000)) } },
      /created_before/,
    );
    expect(await rowCounts(db())).toEqual(before);

    // The CLI: no selection is a usage error, not "every task".
    const none = await cli("task", "cancel", "--yes");
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/--status/);
    await api.client.cancelTask({ id: waiting.id });
  });

  it("a filter that matches nothing answers 0, dry run or not", async () => {
    const dry = await control.bulkTasks({ action: BulkAction.CANCEL, selection: { types: ["no-such-type"] }, dryRun: true });
    expect({ matched: dry.matched, eligible: dry.eligible, changed: dry.changed }).toEqual({ matched: 0n, eligible: 0n, changed: 0n });
    const real = await control.bulkTasks({ action: BulkAction.CANCEL, selection: { types: ["no-such-type"] } });
    expect({ matched: real.matched, changed: real.changed, complete: real.complete }).toEqual({ matched: 0n, changed: 0n, complete: true });
    const out = await cli("task", "cancel", "--type", "no-such-type");
    expect(out).toMatchObject({ code: 0, stdout: "0 tasks match: nothing to do\n" });
  });

  it("dry run counts; pause, resume, retry and delete by filter change only eligible tasks; repeats change nothing", async () => {
    const name = `bulk-${Date.now()}`;
    const { tasks } = await api.client.createTasks({ tasks: Array.from({ length: 30 }, () => ({ ...taskRequest({ runAt: later() }), name })) });
    const byName = { nameContains: name.toUpperCase() };
    const dry = await cli("task", "pause", "--name", name.toUpperCase());
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/^30 tasks match; 30 would be paused, 0 not eligible\.\nnothing changed/);
    expect((await control.bulkTasks({ action: BulkAction.RESUME, selection: byName, dryRun: true })).eligible).toBe(0n);

    const paused = await cli("task", "pause", "--name", name, "--yes");
    expect(paused.stdout).toBe("30 paused, 0 skipped (not eligible or changed meanwhile) of 30 matched\n");
    const again = await control.bulkTasks({ action: BulkAction.PAUSE, selection: byName });
    expect({ changed: again.changed, skipped: again.skipped }).toEqual({ changed: 0n, skipped: 30n });
    expect((await api.client.listTasks({ statuses: [TaskStatus.PAUSED], pageSize: 100 })).tasks.filter((t) => t.name === name)).toHaveLength(30);

    // Delete refuses unfinished tasks: all skipped, none deleted.
    const refused = await control.bulkTasks({ action: BulkAction.DELETE, selection: byName });
    expect({ changed: refused.changed, skipped: refused.skipped }).toEqual({ changed: 0n, skipped: 30n });
    await expectConnectError(control.deleteTask({ id: tasks[0]!.id }), Code.FailedPrecondition, /only SUCCEEDED, FAILED and CANCELLED/);

    const resumed = await control.bulkTasks({ action: BulkAction.RESUME, selection: { ...byName, statuses: [TaskStatus.PAUSED] } });
    expect(resumed.changed).toBe(30n);
    const cancelled = await cli("task", "cancel", "--name", name, "--status", "queued", "--yes", "--reason", "bulk test");
    expect(cancelled.stdout).toMatch(/^30 cancelled/);
    const retried = await control.bulkTasks({ action: BulkAction.RETRY, selection: { ids: tasks.slice(0, 10).map((t) => t.id) } });
    expect(retried.changed).toBe(10n);
    await control.bulkTasks({ action: BulkAction.CANCEL, selection: { ids: tasks.slice(0, 10).map((t) => t.id) } });
    const deleted = await cli("task", "delete", "--name", name, "--yes");
    expect(deleted.stdout).toMatch(/^30 deleted/);
    expect((await control.bulkTasks({ action: BulkAction.DELETE, selection: byName, dryRun: true })).matched).toBe(0n);
    await expectConnectError(api.client.getTask({ id: tasks[0]!.id }), Code.NotFound);
    const { rows } = await sql<{ n: string }>`select count(*) as n from task_history where task_id = any(${tasks.map((t) => String(t.id))}::bigint[])`.execute(db());
    expect(Number(rows[0]!.n)).toBe(0);
    await expectCountsExact();
    expect(await historyProblems()).toEqual([]);
  });

  it("selects by name prefix as ListTasks does: case-sensitive, and % or _ match only themselves", async () => {
    const stem = `bulk-prefix-${Date.now()}`;
    const names = [`${stem}_a`, `${stem}_b`, `${stem}xa`, `${stem.toUpperCase()}_c`];
    await api.client.createTasks({ tasks: names.map((name) => ({ ...taskRequest({ runAt: later() }), name })) });
    const selection = { namePrefix: `${stem}_` };
    const listed = await api.client.listTasks({ namePrefix: selection.namePrefix, pageSize: 100 });
    expect(listed.tasks.map((t) => t.name).sort()).toEqual([`${stem}_a`, `${stem}_b`]);
    const dry = await control.bulkTasks({ action: BulkAction.PAUSE, selection, dryRun: true });
    expect([dry.matched, dry.eligible]).toEqual([2n, 2n]);
    const paused = await control.bulkTasks({ action: BulkAction.PAUSE, selection });
    expect(paused.changed).toBe(2n);
    const { rows } = await sql<{ name: string; status: string }>`select name, status::text from tasks where name = any(${names}::text[])`.execute(db());
    expect(names.map((name) => rows.find((r) => r.name === name)?.status)).toEqual(["paused", "paused", "queued", "queued"]);
    await control.bulkTasks({ action: BulkAction.CANCEL, selection: { nameContains: stem } });
  });

  it("selects by queue: only the named queue's tasks change", async () => {
    const name = `bulk-queue-${Date.now()}`;
    const queued = (queue: string) => Array.from({ length: 5 }, () => ({ ...taskRequest({ runAt: later() }), name, queue }));
    await api.client.createTasks({ tasks: [...queued("bulk-a"), ...queued("bulk-b")] });
    const dry = await cli("task", "pause", "--queue", "bulk-a", "--name", name);
    expect(dry.stdout).toMatch(/^5 tasks match; 5 would be paused/);
    const paused = await cli("task", "pause", "--queue", "bulk-a", "--name", name, "--yes");
    expect(paused.stdout).toMatch(/^5 paused/);
    const { tasks } = await api.client.listTasks({ pageSize: 100 });
    const mine = tasks.filter((t) => t.name === name);
    expect(mine.filter((t) => t.status === TaskStatus.PAUSED).map((t) => t.queue)).toEqual(Array(5).fill("bulk-a"));
    expect(mine.filter((t) => t.queue === "bulk-b").every((t) => t.status === TaskStatus.QUEUED)).toBe(true);
    const cancelled = await control.bulkTasks({ action: BulkAction.CANCEL, selection: { nameContains: name } });
    expect(cancelled.changed).toBe(10n);
  });

  it("bulk cancel of 10,000 queued tasks while workers run: each ends CANCELLED or finished, never both", async () => {
    const total = 10_000;
    for (let i = 0; i < total; i += 2_500) {
      await api.client.createTasks({ tasks: Array.from({ length: 2_500 }, () => taskRequest({ parameters: { sleep_ms: 5 } })) });
    }
    let workers: Workers | undefined = await startTestWorkers(api.database, { workerConcurrency: 8 });
    try {
      await waitFor(async () => (await countTasksByTypeAndStatus(db())).some((g) => g.status === "succeeded" && g.count >= 200), "workers under way");
      const out = await cli("task", "cancel", "--status", "QUEUED", "--type", "noop", "--yes");
      expect(out.code, out.stderr).toBe(0);
      expect(out.stdout).toMatch(/^\d+ cancelled/);
      await waitFor(async () => {
        const { rows } = await sql<{ n: string }>`select count(*) as n from tasks where status not in ('succeeded', 'failed', 'cancelled')`.execute(db());
        return Number(rows[0]!.n) === 0;
      }, "every task finished", 60_000);
      await workers.stop();
      workers = undefined;
      const { rows } = await sql<{ status: string; n: string; both: string }>`
        select status, count(*) as n,
          count(*) filter (where exists (select 1 from task_history h where h.task_id = t.id and h.status = 'succeeded')
            and exists (select 1 from task_history h where h.task_id = t.id and h.status = 'cancelled')) as both
        from tasks t group by status`.execute(db());
      const by = Object.fromEntries(rows.map((r) => [r.status, { n: Number(r.n), both: Number(r.both) }]));
      expect(by.cancelled!.n).toBeGreaterThan(5_000);
      expect(rows.reduce((n, r) => n + Number(r.both), 0)).toBe(0);
      expect(Object.keys(by).sort()).toEqual(expect.arrayContaining(["cancelled", "succeeded"]));
      expect(await historyProblems()).toEqual([]);
      await expectCountsExact();
    } finally {
      await workers?.stop();
    }
  }, 240_000);
});
