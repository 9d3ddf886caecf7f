import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CatchUpPolicy, OverlapPolicy, type ScheduleService } from "../src/gen/task/v1/schedule_pb.js";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { expectConnectError, rowCounts } from "./helpers/factory.js";
import { runCli } from "./helpers/cli.js";
import { scheduleClientFor, scheduleSpec } from "./helpers/schedules.js";

let api: TestApi;
let schedules: Client<typeof ScheduleService>;
beforeAll(async () => {
  api = await startTestApi();
  schedules = scheduleClientFor(api.server.url);
});
afterAll(async () => api?.close());

async function scheduleCount(): Promise<number> {
  const { rows } = await api.database.db.pool.query("select count(*)::int as n from schedules");
  return rows[0].n;
}

describe("ScheduleService over HTTP", () => {
  it("create, get, list, update, pause, resume, trigger, delete", async () => {
    const before = Date.now();
    const { schedule } = await schedules.createSchedule({
      spec: scheduleSpec({ name: "nightly-report", cron: "0 7 * * *", timeZone: "Europe/Paris", task: { type: "noop", parameters: { sleep_ms: 5 }, maxAttempts: 2 }, overlap: OverlapPolicy.SKIP }),
    });
    expect(schedule!.spec).toMatchObject({ name: "nightly-report", cron: "0 7 * * *", timeZone: "Europe/Paris", paused: false, catchUp: CatchUpPolicy.SKIP, overlap: OverlapPolicy.SKIP });
    const next = timestampDate(schedule!.nextRunAt!);
    expect(next.getTime()).toBeGreaterThan(before);
    expect(next.getTime() - before).toBeLessThanOrEqual(86_400_000);
    expect(new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Paris", timeStyle: "short" }).format(next)).toBe("07:00");

    expect((await schedules.getSchedule({ name: "nightly-report" })).schedule!.id).toBe(schedule!.id);

    // Applying the same spec again changes nothing (not even updated_at).
    const same = await schedules.updateSchedule({ name: "nightly-report", spec: schedule!.spec });
    expect(same.changed).toBe(false);
    expect(same.schedule!.updatedAt).toEqual(schedule!.updatedAt);
    // Parameters in another key order are the same parameters.
    const edited = await schedules.updateSchedule({
      name: "nightly-report",
      spec: scheduleSpec({ ...schedule!.spec, task: { type: "noop", parameters: { sleep_ms: 10 }, maxAttempts: 2 } }),
    });
    expect(edited.changed).toBe(true);
    expect(edited.schedule!.nextRunAt).toEqual(schedule!.nextRunAt); // timing unchanged: the pending tick stays
    const retimed = await schedules.updateSchedule({ name: "nightly-report", spec: scheduleSpec({ ...edited.schedule!.spec, cron: "0 8 * * *" }) });
    expect(new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Paris", timeStyle: "short" }).format(timestampDate(retimed.schedule!.nextRunAt!))).toBe("08:00");

    await schedules.createSchedule({ spec: scheduleSpec({ name: "another" }) });
    const page1 = await schedules.listSchedules({ pageSize: 1 });
    expect(page1.schedules.map((s) => s.spec!.name)).toEqual(["another"]);
    const page2 = await schedules.listSchedules({ pageSize: 1, pageToken: page1.nextPageToken });
    expect(page2.schedules.map((s) => s.spec!.name)).toEqual(["nightly-report"]);
    expect(page2.nextPageToken).toBe("");

    const paused = await schedules.pauseSchedule({ name: "nightly-report" });
    expect(paused.schedule!.spec!.paused).toBe(true);
    expect(paused.schedule!.nextRunAt).toBeUndefined();
    const resumed = await schedules.resumeSchedule({ name: "nightly-report" });
    expect(resumed.schedule!.spec!.paused).toBe(false);
    expect(resumed.schedule!.nextRunAt).toBeDefined();

    // Trigger: one task now, carrying the schedule id; ListTasks filters by it.
    const { task } = await schedules.triggerSchedule({ name: "nightly-report" });
    expect(task).toMatchObject({ name: "nightly-report", type: "noop", scheduleId: schedule!.id, maxAttempts: 2, status: TaskStatus.QUEUED });
    expect(task!.parameters).toEqual({ sleep_ms: 10 });
    await api.client.createTask({ name: "unrelated", type: "noop" });
    const listed = await api.client.listTasks({ scheduleIds: [schedule!.id] });
    expect(listed.tasks.map((t) => t.id)).toEqual([task!.id]);
    expect(listed.totalCount).toBe(1n);
    const got = (await schedules.getSchedule({ name: "nightly-report" })).schedule!;
    expect(got.lastTaskId).toBe(task!.id);
    expect(got.lastTaskStatus).toBe(TaskStatus.QUEUED);
    expect(got.lastRunAt).toEqual(task!.scheduledAt);

    // Rename, then delete: the tasks it made stay.
    await schedules.updateSchedule({ name: "nightly-report", spec: scheduleSpec({ ...got.spec, name: "morning-report" }) });
    await expectConnectError(schedules.getSchedule({ name: "nightly-report" }), Code.NotFound, 'schedule "nightly-report" not found');
    await schedules.deleteSchedule({ name: "morning-report" });
    await expectConnectError(schedules.deleteSchedule({ name: "morning-report" }), Code.NotFound);
    const kept = (await api.client.getTask({ id: task!.id })).task!;
    expect(kept.scheduleId).toBe(0n);
    await schedules.deleteSchedule({ name: "another" });
  });
});

describe("bad input is refused with the field named, and nothing is stored", () => {
  it.each([
    ["an invalid expression", { cron: "61 * * * *" }, /^cron: "61 \* \* \* \*" is not a valid cron expression: Invalid value for minute: 61/],
    ["a four-field expression", { cron: "* * * *" }, /^cron: .*exactly five, six, or seven/],
    ["a missing expression", { cron: "" }, /^cron: is required/],
    ["an expression that never fires", { cron: "0 0 30 2 *" }, /^cron: "0 0 30 2 \*" never matches a future time/],
    ["an unknown zone", { timeZone: "Mars/Olympus_Mons" }, /^time_zone: unknown time zone "Mars\/Olympus_Mons"/],
    ["an unknown type", { task: { type: "fax" } }, /^task.type: unknown task type "fax"/],
    ["no task template", { task: undefined }, /^task: is required/],
    ["template parameters the type rejects", { task: { type: "noop", parameters: { sleep_ms: "soon" } } }, /^task.parameters.sleep_ms: /],
    ["a placeholder where the type wants a number", { task: { type: "noop", parameters: { sleep_ms: "{{scheduled_at}}" } } }, /^task.parameters.sleep_ms: /],
    ["an unknown placeholder", { task: { type: "shell", parameters: { command: "echo {{yesterday}}" } } }, /^task.parameters.command: unknown placeholder \{\{yesterday\}\} \(known: scheduled_at, scheduled_date, schedule_name\)/],
    ["an unknown parameter", { task: { type: "noop", parameters: { speed: 1 } } }, /^task.parameters: /],
    ["a bad priority", { task: { type: "noop", priority: 5000 } }, /^task.priority: /],
    ["backfill without a limit", { catchUp: CatchUpPolicy.BACKFILL }, /^backfill_limit: must be between 1 and 1000/],
    ["a limit without backfill", { backfillLimit: 5 }, /^backfill_limit: is only allowed with catch-up policy backfill/],
    ["an unknown overlap policy", { overlap: 9 as OverlapPolicy }, /^overlap: is not a valid overlap policy/],
    ["no name", { name: "  " }, /^name: is required/],
  ])("%s", async (_what, overrides, message) => {
    const before = await rowCounts(api.database.db.kysely);
    const schedulesBefore = await scheduleCount();
    await expectConnectError(schedules.createSchedule({ spec: scheduleSpec({ name: "bad", ...overrides }) }), Code.InvalidArgument, message);
    expect(await scheduleCount()).toBe(schedulesBefore);
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
  });

  it("reports every problem at once", async () => {
    const err = await expectConnectError(
      schedules.createSchedule({ spec: scheduleSpec({ name: "", cron: "nope", timeZone: "Nowhere", task: { type: "fax" } }) }),
      Code.InvalidArgument,
    );
    expect(err.rawMessage).toMatch(/name: is required; time_zone: .*; cron: .*; task.type: unknown task type "fax"/);
  });

  it("a duplicate name is AlreadyExists and leaves the first schedule as it was", async () => {
    const schedulesBefore = await scheduleCount();
    const { schedule } = await schedules.createSchedule({ spec: scheduleSpec({ name: "dup", cron: "0 * * * *" }) });
    await expectConnectError(schedules.createSchedule({ spec: scheduleSpec({ name: "dup", cron: "5 * * * *" }) }), Code.AlreadyExists, /^name: a schedule named "dup" already exists/);
    await schedules.createSchedule({ spec: scheduleSpec({ name: "other" }) });
    await expectConnectError(schedules.updateSchedule({ name: "other", spec: scheduleSpec({ name: "dup" }) }), Code.AlreadyExists, /^name: /);
    expect(await scheduleCount()).toBe(schedulesBefore + 2);
    expect((await schedules.getSchedule({ name: "dup" })).schedule).toEqual(schedule);
    await expectConnectError(schedules.updateSchedule({ name: "missing", spec: scheduleSpec({ name: "missing" }) }), Code.NotFound);
    await expectConnectError(schedules.triggerSchedule({ name: "missing" }), Code.NotFound);
    await expectConnectError(api.client.listTasks({ scheduleIds: [0n] }), Code.InvalidArgument, /^schedule_ids\[0\]: /);
    await expectConnectError(schedules.listSchedules({ pageToken: "garbage" }), Code.InvalidArgument, /^page_token: /);
    await schedules.deleteSchedule({ name: "dup" });
    await schedules.deleteSchedule({ name: "other" });
  });
});

describe("ScheduleService behind API tokens", () => {
  it("needs a token like TaskService, and the CLI sends it", async () => {
    const guarded = await startTestApi({ config: { apiTokens: ["s3cret"] } });
    try {
      const anonymous = scheduleClientFor(guarded.server.url);
      await expectConnectError(anonymous.createSchedule({ spec: scheduleSpec({ name: "x" }) }), Code.Unauthenticated);
      await expectConnectError(anonymous.listSchedules({}), Code.Unauthenticated);
      const { rows } = await guarded.database.db.pool.query("select count(*)::int as n from schedules");
      expect(rows[0].n).toBe(0);
      const res = await runCli(["--address", guarded.server.url, "--token", "s3cret", "schedule", "create", "x", "--cron", "@daily", "--type", "noop"]);
      expect(res.stderr).toBe("");
      expect(res.code).toBe(0);
    } finally {
      await guarded.close();
    }
  });
});
