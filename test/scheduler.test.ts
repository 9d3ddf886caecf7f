import { setTimeout as sleep } from "node:timers/promises";
import { sql } from "kysely";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { CatchUpPolicy, OverlapPolicy } from "../src/gen/task/v1/schedule_pb.js";
import { loadConfig } from "../src/config.js";
import { builtinPlugins } from "../src/plugins/builtin.js";
import { Scheduler, systemClock } from "../src/schedules/scheduler.js";
import { createTestDatabase, type TestDatabase } from "./helpers/database.js";
import { waitFor } from "./helpers/wait.js";
import { openListener } from "../src/store/listen.js";
import { jobOf, setTaskRow, taskRow } from "./helpers/factory.js";
import { FakeClock, scheduleHarness, scheduleSpec, scheduleTasks, type ScheduleHarness, type SpecInit } from "./helpers/schedules.js";

let database: TestDatabase;
let clock: FakeClock;
let h: ScheduleHarness;

beforeAll(async () => {
  database = await createTestDatabase();
  clock = new FakeClock("2026-06-01T10:00:30Z");
  h = scheduleHarness(database, clock);
});
afterEach(async () => {
  await database.db.pool.query("delete from schedules");
});
afterAll(async () => {
  await h?.close();
  await database?.drop();
});

async function create(at: string, spec: SpecInit) {
  clock.set(at);
  const { schedule } = await h.client.createSchedule({ spec: scheduleSpec(spec) });
  return schedule!;
}

async function scheduleRow(id: bigint) {
  return database.db.kysely.selectFrom("schedules").selectAll().where("id", "=", String(id)).executeTakeFirstOrThrow();
}

const ticksOf = async (id: bigint) => (await scheduleTasks(database, id)).map((t) => t.scheduled_at.toISOString());

/** Moves the clock from `from` to `to` in steps, running the scheduler at each. */
async function stepThrough(from: string, to: string, stepMs: number): Promise<void> {
  const scheduler = h.scheduler();
  for (let t = new Date(from).getTime(); t <= new Date(to).getTime(); t += stepMs) {
    clock.set(new Date(t));
    await scheduler.runDue();
  }
}

describe("scheduler ticks", () => {
  it("creates one task at each tick, with its history row and job, and the template rendered for that tick", async () => {
    const s = await create("2026-06-01T10:00:30Z", {
      name: "render",
      timeZone: "Pacific/Auckland",
      task: { type: "shell", parameters: { command: "echo {{scheduled_at}} {{ scheduled_date }} {{schedule_name}}" } },
    });
    expect(s.nextRunAt && new Date(Number(s.nextRunAt.seconds) * 1000).toISOString()).toBe("2026-06-01T10:01:00.000Z");
    const scheduler = h.scheduler();
    expect(await scheduler.runDue()).toBe(0);
    expect(await ticksOf(s.id)).toEqual([]);

    clock.set("2026-06-01T10:01:00Z");
    expect(await scheduler.runDue()).toBe(1);
    expect(await scheduler.runDue()).toBe(0);
    const [task] = await scheduleTasks(database, s.id);
    expect(task!.scheduled_at.toISOString()).toBe("2026-06-01T10:01:00.000Z");
    // Auckland is UTC+12 in June: 22:01 on the 1st there.
    expect(task!.parameters).toEqual({ command: "echo 2026-06-01T10:01:00.000Z 2026-06-01 render" });
    const row = await taskRow(database.db.kysely, task!.id);
    expect(row).toMatchObject({ name: "render", type: "shell", status: "queued", schedule_id: String(s.id) });
    expect(await jobOf(database.db.kysely, task!.id)).toBeDefined();
    const history = await database.db.kysely.selectFrom("task_history").select("details").where("task_id", "=", task!.id).execute();
    expect(history.map((r) => r.details)).toEqual(["created"]);
    expect(await scheduleRow(s.id)).toMatchObject({ last_task_id: task!.id, next_run_at: new Date("2026-06-01T10:02:00Z"), last_error: null });

    clock.set("2026-06-01T22:30:00Z"); // the 2nd in Auckland: scheduled_date follows the schedule's zone
    await scheduler.runDue();
    expect((await scheduleTasks(database, s.id)).at(-1)!.parameters).toEqual({ command: "echo 2026-06-01T22:30:00.000Z 2026-06-02 render" });
  });

  it("several schedulers racing over many ticks create each tick's task exactly once", async () => {
    const schedules = [];
    for (let i = 0; i < 4; i++) schedules.push(await create("2026-06-01T10:00:30Z", { name: `race-${i}`, cron: i % 2 ? "* * * * *" : "*/2 * * * *" }));
    const racers = [h.scheduler(), h.scheduler(), h.scheduler()];
    for (let minute = 1; minute <= 20; minute++) {
      clock.set(new Date(Date.parse("2026-06-01T10:00:00Z") + minute * 60_000));
      await Promise.all(racers.map((r) => r.runDue()));
    }
    for (const [i, s] of schedules.entries()) {
      const ticks = await ticksOf(s.id);
      expect(ticks).toHaveLength(i % 2 ? 20 : 10);
      expect(new Set(ticks).size).toBe(ticks.length);
    }
  });

  it("the unique (schedule_id, scheduled_at) key stops a second task for a tick even when next_run_at is rewound", async () => {
    const s = await create("2026-06-01T10:00:30Z", { name: "rewound" });
    clock.set("2026-06-01T10:01:00Z");
    await h.scheduler().runDue();
    const [first] = await scheduleTasks(database, s.id);
    await database.db.pool.query("update schedules set next_run_at = '2026-06-01T10:01:00Z' where id = $1", [String(s.id)]);
    await h.scheduler().runDue();
    expect(await ticksOf(s.id)).toEqual(["2026-06-01T10:01:00.000Z"]);
    expect((await scheduleRow(s.id)).last_task_id).toBe(first!.id);
    // The key itself: the same tick inserted directly is refused.
    await expect(
      database.db.pool.query("insert into tasks (name, type, max_attempts, timeout_ms, schedule_id, scheduled_at) values ('x', 'noop', 1, 1000, $1, '2026-06-01T10:01:00Z')", [String(s.id)]),
    ).rejects.toThrow(/tasks_schedule_tick_key/);
  });

  it("a scheduler whose connection dies in the middle of a tick leaves it due; the next one creates it once", async () => {
    const s = await create("2026-06-01T10:00:30Z", { name: "crash" });
    clock.set("2026-06-01T10:01:00Z");
    const dying = h.scheduler({
      // The task, its history row and its job are written; the process "dies" before COMMIT.
      beforeCommit: async (trx) => void (await sql`select pg_terminate_backend(pg_backend_pid())`.execute(trx)),
    });
    await expect(dying.runDue()).rejects.toThrow();
    expect(await ticksOf(s.id)).toEqual([]);
    expect((await scheduleRow(s.id)).next_run_at).toEqual(new Date("2026-06-01T10:01:00Z"));
    const jobs = await database.db.pool.query("select count(*)::int as n from graphile_worker.jobs");

    clock.set("2026-06-01T10:01:04Z"); // restarted a few seconds later: the tick is late but not missed
    await h.scheduler().runDue();
    expect(await ticksOf(s.id)).toEqual(["2026-06-01T10:01:00.000Z"]);
    const after = await database.db.pool.query("select count(*)::int as n from graphile_worker.jobs");
    expect(after.rows[0].n).toBe(jobs.rows[0].n + 1);
  });

  it("a tick that keeps failing (database reachable) is retried, then skipped, without holding up other schedules", async () => {
    const poison = await create("2026-06-01T10:00:30Z", { name: "poison" });
    const healthy = await create("2026-06-01T10:00:30Z", { name: "healthy" });
    clock.set("2026-06-01T10:01:00Z");
    const scheduler = h.scheduler({
      beforeCommit: async (_trx, schedule) => {
        if (schedule.name === "poison") throw new Error("boom");
      },
    });
    await expect(scheduler.runDue()).rejects.toThrow("boom");
    await expect(scheduler.runDue()).rejects.toThrow("boom");
    expect((await scheduleRow(poison.id)).next_run_at).toEqual(new Date("2026-06-01T10:01:00Z")); // still due
    await scheduler.runDue();
    expect(await ticksOf(poison.id)).toEqual([]);
    expect(await scheduleRow(poison.id)).toMatchObject({
      next_run_at: new Date("2026-06-01T10:02:00Z"),
      last_error: "tick 2026-06-01T10:01:00.000Z failed 3 times, skipped: boom",
    });
    expect(await ticksOf(healthy.id)).toEqual(["2026-06-01T10:01:00.000Z"]);
  });

  it("records a tick the type no longer accepts, creates nothing for it and moves on", async () => {
    const s = await create("2026-06-01T10:00:30Z", { name: "broken" });
    await database.db.pool.query(`update schedules set parameters = '{"sleep_ms": "soon"}' where id = $1`, [String(s.id)]);
    clock.set("2026-06-01T10:01:00Z");
    await h.scheduler().runDue();
    expect(await ticksOf(s.id)).toEqual([]);
    const row = await scheduleRow(s.id);
    expect(row.last_error).toMatch(/^tick 2026-06-01T10:01:00.000Z: task.parameters.sleep_ms: /);
    expect(row.next_run_at).toEqual(new Date("2026-06-01T10:02:00Z"));
  });
});

describe("catch-up after an outage", () => {
  it("skip drops missed ticks, latest runs the most recent one, backfill runs up to N, oldest first", async () => {
    const every10 = { cron: "*/10 * * * *" };
    const skip = await create("2026-06-01T10:00:30Z", { ...every10, name: "cu-skip", catchUp: CatchUpPolicy.SKIP });
    const latest = await create("2026-06-01T10:00:30Z", { ...every10, name: "cu-latest", catchUp: CatchUpPolicy.LATEST });
    const backfill = await create("2026-06-01T10:00:30Z", { ...every10, name: "cu-backfill", catchUp: CatchUpPolicy.BACKFILL, backfillLimit: 3 });
    const unspecified = await create("2026-06-01T10:00:30Z", { ...every10, name: "cu-default" });

    clock.set("2026-06-01T12:05:00Z"); // everything was down from 10:00:30 to 12:05
    await h.scheduler().runDue();
    expect(await ticksOf(skip.id)).toEqual([]);
    expect(await ticksOf(unspecified.id)).toEqual([]);
    expect((await scheduleRow(skip.id)).last_error).toBe("missed tick 2026-06-01T12:00:00.000Z skipped (catch-up: skip)");
    expect(await ticksOf(latest.id)).toEqual(["2026-06-01T12:00:00.000Z"]);
    expect(await ticksOf(backfill.id)).toEqual(["2026-06-01T11:40:00.000Z", "2026-06-01T11:50:00.000Z", "2026-06-01T12:00:00.000Z"]);
    for (const s of [skip, latest, backfill]) expect((await scheduleRow(s.id)).next_run_at).toEqual(new Date("2026-06-01T12:10:00Z"));

    // Back to normal: the next tick runs everywhere; a tick reached 40 s late still counts as on time.
    clock.set("2026-06-01T12:10:40Z");
    await h.scheduler().runDue();
    expect(await ticksOf(skip.id)).toEqual(["2026-06-01T12:10:00.000Z"]);
    expect((await ticksOf(latest.id)).at(-1)).toBe("2026-06-01T12:10:00.000Z");
    expect(await ticksOf(backfill.id)).toHaveLength(4);
    expect((await scheduleRow(skip.id)).last_error).toBeNull();
  });
});

describe("late but not missed", () => {
  it("ticks reached a few seconds late (a stalled process or database) all run, whatever the policy", async () => {
    const s = await create("2026-06-01T10:00:30Z", { name: "stalled", cron: "*/2 * * * * *" });
    clock.set("2026-06-01T10:00:32Z");
    await h.scheduler().runDue();
    clock.set("2026-06-01T10:00:38.500Z"); // nothing ran for 6.5 s
    await h.scheduler().runDue();
    expect(await ticksOf(s.id)).toEqual(["32", "34", "36", "38"].map((sec) => `2026-06-01T10:00:${sec}.000Z`));
    expect((await scheduleRow(s.id)).next_run_at).toEqual(new Date("2026-06-01T10:00:40Z"));
  });
});

describe("daylight-saving changes", () => {
  const local = (iso: string, zone: string) =>
    new Intl.DateTimeFormat("sv-SE", { timeZone: zone, dateStyle: "short", timeStyle: "short" }).format(new Date(iso));

  it.each([
    // zone, window start, the 02:30 ticks (UTC) across the change
    ["Europe/Paris", "spring forward", "2026-03-27T23:00:00Z", ["2026-03-28T01:30:00.000Z", "2026-03-29T01:00:00.000Z", "2026-03-30T00:30:00.000Z"]],
    ["Europe/Paris", "fall back", "2026-10-24T00:00:00Z", ["2026-10-24T00:30:00.000Z", "2026-10-25T00:30:00.000Z", "2026-10-26T01:30:00.000Z"]],
    ["America/New_York", "spring forward", "2026-03-07T05:00:00Z", ["2026-03-07T07:30:00.000Z", "2026-03-08T07:00:00.000Z", "2026-03-09T06:30:00.000Z"]],
    ["America/New_York", "fall back", "2026-10-31T04:00:00Z", ["2026-10-31T06:30:00.000Z", "2026-11-01T07:30:00.000Z", "2026-11-02T07:30:00.000Z"]],
  ])("a 02:30 daily schedule in %s runs once on the %s day", async (zone, _change, start, expected) => {
    const s = await create(start, { name: `dst-${zone}-${start}`, cron: "30 2 * * *", timeZone: zone });
    await stepThrough(start, new Date(Date.parse(start) + 3 * 86_400_000 - 1).toISOString(), 15 * 60_000);
    const ticks = await ticksOf(s.id);
    expect(ticks).toEqual(expected);
    // Once per local day: the spring-forward day's run is at 03:00, right after the gap.
    expect(new Set(ticks.map((t) => local(t, zone).slice(0, 10))).size).toBe(3);
  });

  it("an interval schedule runs at every real half hour through New York's repeated hour", async () => {
    const s = await create("2026-11-01T04:00:00Z", { name: "dst-interval", cron: "*/30 * * * *", timeZone: "America/New_York" });
    await stepThrough("2026-11-01T04:00:00Z", "2026-11-01T08:00:00Z", 5 * 60_000);
    const ticks = await ticksOf(s.id);
    expect(ticks).toEqual(Array.from({ length: 8 }, (_, i) => new Date(Date.parse("2026-11-01T04:30:00Z") + i * 1_800_000).toISOString()));
    expect(ticks.map((t) => local(t, "America/New_York").slice(11))).toEqual(["00:30", "01:00", "01:30", "01:00", "01:30", "02:00", "02:30", "03:00"]);
  });
});

describe("overlap policies", () => {
  it("skip: no task for a tick while the previous one is unfinished", async () => {
    const s = await create("2026-06-01T10:00:30Z", { name: "ov-skip", overlap: OverlapPolicy.SKIP });
    const scheduler = h.scheduler();
    clock.set("2026-06-01T10:01:00Z");
    await scheduler.runDue();
    const [first] = await scheduleTasks(database, s.id);
    await setTaskRow(database.db.kysely, first!.id, "running");
    clock.set("2026-06-01T10:02:00Z");
    await scheduler.runDue();
    expect(await ticksOf(s.id)).toEqual(["2026-06-01T10:01:00.000Z"]);
    expect((await scheduleRow(s.id)).last_error).toBe(`tick 2026-06-01T10:02:00.000Z skipped: task ${first!.id} has not finished (overlap: skip)`);
    await setTaskRow(database.db.kysely, first!.id, "succeeded");
    clock.set("2026-06-01T10:03:00Z");
    await scheduler.runDue();
    expect(await ticksOf(s.id)).toEqual(["2026-06-01T10:01:00.000Z", "2026-06-01T10:03:00.000Z"]);
  });

  it("cancel_previous: cancels the unfinished task (waiting or running), then creates the tick's", async () => {
    const s = await create("2026-06-01T10:00:30Z", { name: "ov-cancel", overlap: OverlapPolicy.CANCEL_PREVIOUS });
    const scheduler = h.scheduler();
    clock.set("2026-06-01T10:01:00Z");
    await scheduler.runDue();
    clock.set("2026-06-01T10:02:00Z");
    await scheduler.runDue();
    const [a, b] = await scheduleTasks(database, s.id);
    expect(a!.status).toBe("cancelled");
    expect(await jobOf(database.db.kysely, a!.id)).toBeUndefined();
    const history = await database.db.kysely.selectFrom("task_history").select("details").where("task_id", "=", a!.id).orderBy("id").execute();
    expect(history.at(-1)!.details).toBe('cancelled by schedule ov-cancel: superseded by the tick at 2026-06-01T10:02:00.000Z of schedule "ov-cancel" (overlap: cancel_previous)');
    expect(b!.status).toBe("queued");

    await setTaskRow(database.db.kysely, b!.id, "running");
    clock.set("2026-06-01T10:03:00Z");
    await scheduler.runDue();
    expect((await taskRow(database.db.kysely, b!.id)).cancel_requested_at).not.toBeNull();
    expect(await ticksOf(s.id)).toHaveLength(3);
  });

  it("allow (the default) creates a task every tick regardless", async () => {
    const s = await create("2026-06-01T10:00:30Z", { name: "ov-allow" });
    await stepThrough("2026-06-01T10:01:00Z", "2026-06-01T10:03:00Z", 60_000);
    expect((await scheduleTasks(database, s.id)).map((t) => t.status)).toEqual(["queued", "queued", "queued"]);
  });
});

describe("pause and resume", () => {
  it("a paused schedule creates nothing; resuming starts from the next tick, dropping the paused ones", async () => {
    const s = await create("2026-06-01T10:00:30Z", { name: "paused", catchUp: CatchUpPolicy.BACKFILL, backfillLimit: 100 });
    await h.client.pauseSchedule({ name: "paused" });
    await stepThrough("2026-06-01T10:01:00Z", "2026-06-01T10:05:00Z", 60_000);
    expect(await ticksOf(s.id)).toEqual([]);
    clock.set("2026-06-01T10:05:30Z");
    const { schedule } = await h.client.resumeSchedule({ name: "paused" });
    expect(schedule!.nextRunAt!.seconds).toBe(BigInt(Date.parse("2026-06-01T10:06:00Z") / 1000));
    clock.set("2026-06-01T10:06:00Z");
    await h.scheduler().runDue();
    expect(await ticksOf(s.id)).toEqual(["2026-06-01T10:06:00.000Z"]);
  });
});

describe("the loop on the real clock", () => {
  it("sleeps until the next tick and wakes at once when a schedule is created elsewhere (LISTEN/NOTIFY)", async () => {
    // A long fallback sleep: only the notification can make the loop notice the new schedule in time.
    const config = loadConfig({}, {});
    const plugins = builtinPlugins(config, database.logger);
    const listener = openListener(database.url, database.logger);
    const loop = new Scheduler({ db: database.db, registry: plugins.registry, logger: database.logger, listener, maxSleepMs: 120_000 });
    loop.start();
    try {
      await sleep(1_000); // the loop found nothing and went to sleep
      const service = scheduleHarness(database, systemClock);
      const { schedule } = await service.client.createSchedule({ spec: scheduleSpec({ name: "real-clock", cron: "* * * * * *" }) });
      await waitFor(async () => (await scheduleTasks(database, schedule!.id)).length >= 3, "three ticks from the loop", 15_000);
      const tasks = await scheduleTasks(database, schedule!.id);
      for (const t of tasks) expect(t.scheduled_at.getTime() % 1000).toBe(0);
      await service.close();
    } finally {
      await loop.stop();
      await listener.close();
      await plugins.close();
    }
  });
});
