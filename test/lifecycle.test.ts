import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyToBatch } from "../src/store/bulk.js";
import { AuditedBatches } from "../src/store/audit.js";
import {
  afterAttempt,
  cancelTasks,
  claimAttempt,
  claimNextAttempts,
  deleteTasks,
  expireOverdue,
  finishPendingCancels,
  heartbeat,
  pauseTasks,
  recordOutcome,
  requeueOrphans,
  rescueLostAttempts,
  resumeTasks,
  retryTasks,
  type AttemptEnding,
} from "../src/store/lifecycle/index.js";
import type { TaskRow } from "../src/store/schema.js";
import { insertTasks } from "../src/store/tasks.js";
import { createTestDatabase, type TestDatabase } from "./helpers/database.js";

// The state machine, walked pair by pair against the real database: every (state, event) below is
// run on a fresh task. An allowed pair writes exactly one history row and moves the task to the
// expected status (with a pending job exactly when it is QUEUED or RETRYING); a "mark" changes the
// row but not its status and writes no history row (a heartbeat, a cancel request to a running
// attempt); "gone" deletes the task; a refused pair (-) changes nothing: the same row, the same
// history, the same job.

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(() => t?.drop());

const W = "w-lifecycle";
const kysely = () => t.db.kysely;

const failure = (error: string, permanent = false): AttemptEnding => ({ kind: "failed", error, permanent, retryInMs: 60_000 });

async function row(id: string): Promise<TaskRow | undefined> {
  return kysely().selectFrom("tasks").selectAll().where("id", "=", id).executeTakeFirst();
}

async function create(): Promise<TaskRow> {
  const [task] = await insertTasks(t.db, [
    { name: "walk", type: "noop", parameters: {}, priority: 0, maxAttempts: 3, timeoutMs: 1_000, runAt: null, idempotencyKey: null, requestHash: null },
  ]);
  return task!;
}

async function end(task: TaskRow, ending: AttemptEnding): Promise<TaskRow | undefined> {
  return recordOutcome(t.db, task.id, task.attempts, W, afterAttempt(task, ending));
}

async function running(): Promise<TaskRow> {
  return (await claimAttempt(t.db, (await create()).id, 1, W))!;
}

/** How to reach each state, through the lifecycle's own events (one state needs a race, made by hand). */
const states: Record<string, () => Promise<TaskRow>> = {
  queued: create,
  "queued, cancel pending": async () => {
    // What a cancel leaves when its second statement never ran (the process died between them).
    const task = await create();
    await sql`update tasks set cancel_requested_at = now(), cancel_reason = 'raced' where id = ${task.id}`.execute(kysely());
    return (await row(task.id))!;
  },
  retrying: async () => (await end(await running(), failure("boom")))!,
  running,
  "running, cancel pending": async () => (await cancelTasks(kysely(), [(await running()).id], { details: "cancelled", reason: "stop" }))[0]!,
  "paused (held)": async () => (await pauseTasks(kysely(), [(await create()).id], [], "paused"))[0]!,
  "paused (mid-attempt)": async () => (await pauseTasks(kysely(), [(await running()).id], ["noop"], "paused"))[0]!,
  succeeded: async () => (await end(await running(), { kind: "succeeded", result: { ok: true } }))!,
  failed: async () => (await end(await running(), failure("bad input", true)))!,
  cancelled: async () => (await cancelTasks(kysely(), [(await create()).id], { details: "cancelled", reason: null }))[0]!,
  expired: async () => {
    const task = await create();
    await pastDeadline(task.id);
    return (await expireOverdue(kysely(), 1_000)).find((r) => r.id === task.id)!;
  },
};

/** Gives a task an expiry whose deadline has passed (as if created with expire_after and left waiting). */
async function pastDeadline(id: string): Promise<void> {
  await sql`update tasks set expire_after_ms = 1000, expires_at = now() - interval '1 second' where id = ${id}`.execute(kysely());
}

/** Each event as its callers ask for it. */
const events: Record<string, (task: TaskRow) => Promise<unknown>> = {
  claim: (task) => claimAttempt(t.db, task.id, task.attempts + 1, W),
  heartbeat: (task) => heartbeat(kysely(), W, [], [{ taskId: task.id, attempt: task.attempts }]),
  success: (task) => end(task, { kind: "succeeded", result: { ok: true } }),
  "retryable failure": (task) => end(task, failure("boom")),
  "permanent failure": (task) => end(task, failure("bad input", true)),
  timeout: (task) => end(task, failure("timed out after 1s")),
  cancel: (task) => cancelTasks(kysely(), [task.id], { details: "cancelled by ci (operator)", reason: "test" }),
  "bulk cancel": (task) =>
    applyToBatch(new AuditedBatches(kysely(), { actor: "ci", role: "operator" }, { action: "bulk_cancel" }, "changed"), "cancel", [task.id], { runnableTypes: ["noop"], pausableTypes: ["noop"], reason: null, actor: "ci (operator)" }),
  pause: (task) => pauseTasks(kysely(), [task.id], ["noop"], "paused by ci (operator)"),
  resume: (task) => resumeTasks(kysely(), [task.id], "resumed by ci (operator)"),
  retry: (task) => retryTasks(kysely(), [task.id], "manual retry by ci (operator)"),
  rescue: () => rescueLostAttempts(kysely(), { lost: sql<boolean>`worker_id = ${W}`, exited: [W], lease: "15s", limit: 1_000 }),
  "requeue orphan": async (task) => {
    // An orphan: its job is gone, and it has not changed for a while.
    await sql`select graphile_worker.remove_job(${`task:${task.id}`})`.execute(kysely());
    await sql`update tasks set updated_at = now() - interval '1 minute' where id = ${task.id}`.execute(kysely());
    return requeueOrphans(kysely(), 1_000);
  },
  "finish pending cancel": () => finishPendingCancels(kysely(), 1_000),
  delete: (task) => deleteTasks(kysely(), [task.id]),
  expire: async (task) => {
    await pastDeadline(task.id);
    return expireOverdue(kysely(), 1_000);
  },
};

type Expected = string | "mark" | "gone" | "-";
const columns = Object.keys(events);

// prettier-ignore
const table: Record<string, Expected[]> = {
  //                          claim      heartbeat success      retryable    permanent timeout      cancel       bulk cancel  pause     resume     retry     rescue       requeue    finish cancel delete expire
  "queued":                  ["running", "-",      "-",         "-",         "-",      "-",         "cancelled", "cancelled", "paused", "-",       "-",      "-",         "queued",  "-",          "-", "expired"],
  "queued, cancel pending":  ["-",       "-",      "-",         "-",         "-",      "-",         "cancelled", "cancelled", "-",      "-",       "-",      "-",         "-",       "cancelled",  "-", "-"],
  "retrying":                ["running", "-",      "-",         "-",         "-",      "-",         "cancelled", "cancelled", "paused", "-",       "-",      "-",         "retrying", "-",         "-", "-"],
  "running":                 ["-",       "mark",   "succeeded", "retrying",  "failed", "retrying",  "mark",      "mark",      "paused", "-",       "-",      "retrying",  "-",       "-",          "-", "-"],
  "running, cancel pending": ["-",       "mark",   "succeeded", "cancelled", "failed", "cancelled", "mark",      "mark",      "-",      "-",       "-",      "cancelled", "-",       "-",          "-", "-"],
  "paused (held)":           ["-",       "-",      "-",         "-",         "-",      "-",         "cancelled", "cancelled", "-",      "queued",  "-",      "-",         "-",       "-",          "-", "expired"],
  "paused (mid-attempt)":    ["-",       "mark",   "succeeded", "paused",    "failed", "paused",    "mark",      "mark",      "-",      "running", "-",      "paused",    "-",       "-",          "-", "-"],
  "succeeded":               ["-",       "-",      "-",         "-",         "-",      "-",         "-",         "-",         "-",      "-",       "-",      "-",         "-",       "-",          "gone", "-"],
  "failed":                  ["-",       "-",      "-",         "-",         "-",      "-",         "-",         "-",         "-",      "-",       "queued", "-",         "-",       "-",          "gone", "-"],
  "cancelled":               ["-",       "-",      "-",         "-",         "-",      "-",         "-",         "-",         "-",      "-",       "queued", "-",         "-",       "-",          "gone", "-"],
  "expired":                 ["-",       "-",      "-",         "-",         "-",      "-",         "-",         "-",         "-",      "-",       "queued", "-",         "-",       "-",          "gone", "-"],
};

async function historyOf(id: string) {
  return kysely().selectFrom("task_history").select(["status", "attempt", "details"]).where("task_id", "=", id).orderBy("id").execute();
}

async function jobOf(id: string): Promise<string | null> {
  const { rows } = await sql<{ id: string }>`select id::text from graphile_worker.jobs where key = ${`task:${id}`}`.execute(kysely());
  return rows[0]?.id ?? null;
}

const pairs = Object.entries(table).flatMap(([state, outcomes]) => outcomes.map((expected, i) => ({ state, event: columns[i]!, expected })));

describe("the task state machine", () => {
  it("the table names every state and event", () => {
    expect(Object.keys(table).sort()).toEqual(Object.keys(states).sort());
    for (const outcomes of Object.values(table)) expect(outcomes).toHaveLength(columns.length);
  });

  it("create: QUEUED, one history row, its job", async () => {
    const task = await create();
    expect(task.status).toBe("queued");
    expect(await historyOf(task.id)).toEqual([{ status: "queued", attempt: 0, details: "created" }]);
    expect(await jobOf(task.id)).not.toBeNull();
  });

  it.each(pairs)("$state + $event -> $expected", async ({ state, event, expected }) => {
    const task = await states[state]!();
    expect(task.status, `setting up ${state}`).toBe(state.split(/[ ,]/)[0]);
    const before = { row: await row(task.id), history: await historyOf(task.id), job: await jobOf(task.id) };
    // Events that need a prepared row (an orphan has no job) read it again.
    await events[event]!((await row(task.id))!);
    const after = { row: await row(task.id), history: await historyOf(task.id), job: await jobOf(task.id) };
    if (expected === "-") {
      // Refused: nothing changed. (The orphan's preparation, done before the event, is undone in the snapshot's terms.)
      if (event === "requeue orphan" || event === "expire") {
        const prepared = { updated_at: null, expires_at: null, expire_after_ms: null };
        expect({ ...after.row, ...prepared }).toEqual({ ...before.row, ...prepared });
        expect(after.history).toEqual(before.history);
        return;
      }
      expect(after).toEqual(before);
      return;
    }
    if (expected === "gone") {
      expect(after.row).toBeUndefined();
      expect(after.history).toEqual([]);
      return;
    }
    if (expected === "mark") {
      expect(after.row!.status).toBe(before.row!.status);
      expect(after.row).not.toEqual(before.row);
      expect(after.history).toEqual(before.history);
      return;
    }
    expect(after.row!.status).toBe(expected);
    expect(after.history.slice(0, -1)).toEqual(before.history);
    expect(after.history.at(-1)).toMatchObject({ status: expected, attempt: after.row!.attempts });
    // The wake-ups: a task waits with exactly one pending job, and has none otherwise.
    expect(after.job !== null, `job after ${event}`).toBe(expected === "queued" || expected === "retrying");
  });

  it("a claim never starts a task past its deadline, by id or from its job; the expiry records it", async () => {
    const task = await create();
    await pastDeadline(task.id);
    expect(await claimAttempt(t.db, task.id, 1, W)).toBeUndefined();
    // The batch claim finds its job, starts nothing and drops the job.
    await sql`update tasks set queue = 'past-deadline' where id = ${task.id}`.execute(kysely());
    await sql`select graphile_worker.add_job('run:past-deadline:noop', json_build_object('taskId', ${task.id}::text, 'attempt', 1))`.execute(kysely());
    expect(await claimNextAttempts(t.db, W, { identifiers: ["run:past-deadline:noop"], forbiddenFlags: [], limit: 10 })).toEqual([]);
    expect((await row(task.id))!.status).toBe("queued");
    const [expired] = await expireOverdue(kysely(), 1_000);
    expect(expired).toMatchObject({ id: task.id, status: "expired" });
    expect((await historyOf(task.id)).at(-1)!.details).toMatch(/^expired: not started by its deadline \S+ \(expire after 1\.0 s\)$/);
  });
});
