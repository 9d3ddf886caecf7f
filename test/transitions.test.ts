import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listTaskHistory } from "../src/store/task-history.js";
import { insertTasks, type NewTask } from "../src/store/tasks.js";
import { transition } from "../src/store/lifecycle/statement.js";
import { createTestDatabase, type TestDatabase } from "./helpers/database.js";
import { jobOf, rowCounts } from "./helpers/factory.js";

const newTask = (name: string): NewTask => ({
  name, type: "noop", parameters: {}, priority: 0, maxAttempts: 3, timeoutMs: 1000, runAt: null, idempotencyKey: null, requestHash: null,
});

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(() => t?.drop());

// The lifecycle's statement builder (src/store/lifecycle/statement.ts); test/lifecycle-writers.test.ts
// checks that nothing else writes a status or a history row.
describe("transition statements", () => {
  it("writes one history row per changed task, runs its side effects, and nothing when the guard matches nothing", async () => {
    const [a, b] = await insertTasks(t.db, [newTask("a"), newTask("b")]);
    const before = await rowCounts(t.db.kysely);
    const ids = [a!.id, b!.id];
    const cancel = (expected: string) =>
      transition({
        change: { set: sql`status = 'cancelled', finished_at = now()`, where: sql`id = any(${ids}::bigint[]) and status = ${expected}::task_status` },
        details: sql`'cancelled ' || name`,
        removeJob: true,
      }).execute(t.db.kysely);

    expect((await cancel("running")).rows).toEqual([]);
    expect(await rowCounts(t.db.kysely)).toEqual(before);

    const { rows } = await cancel("queued");
    expect(rows.map((r) => [r.id, r.status])).toEqual([[a!.id, "cancelled"], [b!.id, "cancelled"]]);
    for (const row of rows) {
      const history = await listTaskHistory(t.db.kysely, row.id);
      expect(history.map((h) => [h.status, h.attempt, h.details])).toEqual([["queued", 0, "created"], ["cancelled", 0, `cancelled ${row.name}`]]);
      // The job removal ran although the statement's result never mentions it.
      expect(await jobOf(t.db.kysely, row.id)).toBeUndefined();
    }
  });

  it("keeps the guard when a fragment ends in a -- comment", async () => {
    const [a, b] = await insertTasks(t.db, [newTask("commented-a"), newTask("commented-b")]);
    const { rows } = await transition({
      change: {
        set: sql`status = 'cancelled', finished_at = now() -- a comment must not swallow the rest`,
        where: sql`id = ${a!.id} and status = 'queued' -- nor here`,
      },
      details: sql`'cancelled' -- nor here`,
    }).execute(t.db.kysely);
    expect(rows.map((r) => r.id)).toEqual([a!.id]);
    const { rows: untouched } = await sql<{ status: string }>`select status from tasks where id = ${b!.id}`.execute(t.db.kysely);
    expect(untouched[0]?.status).toBe("queued");
  });
});
