import { sql } from "kysely";
import { afterAll, beforeAll, expect, it } from "vitest";
import { cancelTasks, claimAttempt, msToNextExpiry } from "../src/store/lifecycle/index.js";
import type { TaskRow } from "../src/store/schema.js";
import { insertTasks } from "../src/store/tasks.js";
import { createTestDatabase, type TestDatabase } from "./helpers/database.js";

// How long a process's expiry part sleeps (src/worker/expiry.ts) comes from msToNextExpiry: null
// when no waiting task has a deadline (the part then checks every EXPIRY_CHECK_MS), the time to the
// earliest deadline otherwise. It once read "no deadline" as "due now" (greatest(0, null) is 0), and
// every worker and server process asked twice every few milliseconds.

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(() => t?.drop());

async function create(deadlineInMs: number | null): Promise<TaskRow> {
  const [task] = await insertTasks(t.db, [
    { name: "deadline", type: "noop", parameters: {}, priority: 0, maxAttempts: 3, timeoutMs: 1_000, runAt: null, idempotencyKey: null, requestHash: null },
  ]);
  if (deadlineInMs !== null) {
    await sql`update tasks set expire_after_ms = 60000, expires_at = now() + make_interval(secs => ${deadlineInMs / 1000}) where id = ${task!.id}`.execute(t.db.kysely);
  }
  return task!;
}

it("is null when no waiting task has a deadline, not 0", async () => {
  expect(await msToNextExpiry(t.db.kysely)).toBeNull();
  await create(null);
  expect(await msToNextExpiry(t.db.kysely)).toBeNull();
});

it("is the time to the earliest deadline of a task that may still expire", async () => {
  await create(30_000);
  const late = await create(10_000);
  const ms = await msToNextExpiry(t.db.kysely);
  expect(ms).toBeGreaterThan(8_000);
  expect(ms).toBeLessThanOrEqual(10_000);

  // Started, or cancelled: it can no longer expire, so its deadline no longer counts.
  await claimAttempt(t.db, late.id, 1, "w-expiry-wait");
  expect(await msToNextExpiry(t.db.kysely)).toBeGreaterThan(20_000);
});

it("is 0, not negative, once a deadline has passed", async () => {
  const past = await create(-5_000);
  expect(await msToNextExpiry(t.db.kysely)).toBe(0);
  await cancelTasks(t.db.kysely, [past.id], { details: "cancelled", reason: null });
  expect(await msToNextExpiry(t.db.kysely)).toBeGreaterThan(20_000);
});
