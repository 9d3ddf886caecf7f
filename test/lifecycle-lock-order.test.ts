import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { afterAttempt, claimAttempt, heartbeat, recordOutcomes, shortenLeases } from "../src/store/lifecycle/index.js";
import type { TaskRow } from "../src/store/schema.js";
import { insertTasks } from "../src/store/tasks.js";
import { createTestDatabase, type TestDatabase } from "./helpers/database.js";
import { waitFor } from "./helpers/wait.js";

// The statements that lock several running attempts' rows (heartbeat, outcome, shortened leases)
// take them in id order, whatever order their input names them in: a transaction holding the
// lower id and then taking the higher one (as another of these statements would) must not
// deadlock with them. Before, an agent's Heartbeat and ReportOutcomes deadlocked (40P01) on
// `tasks` rows, each locking in its input's order.

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(() => t?.drop());

const W = "w-lock-order";

async function runningPair(): Promise<[TaskRow, TaskRow]> {
  const created = await insertTasks(
    t.db,
    [0, 1].map(() => ({ name: "lock", type: "noop", parameters: {}, priority: 0, maxAttempts: 3, timeoutMs: 1_000, runAt: null, idempotencyKey: null, requestHash: null })),
  );
  const [low, high] = await Promise.all(created.map(async (c) => (await claimAttempt(t.db, c.id, 1, W))!));
  return Number(low!.id) < Number(high!.id) ? [low!, high!] : [high!, low!];
}

/**
 * Holds `low`'s row in a transaction, runs `statement` (naming high before low) until it waits,
 * then takes `high`'s row too: a statement that took high first deadlocks with it.
 */
async function withoutDeadlock(low: TaskRow, high: TaskRow, statement: () => Promise<unknown>): Promise<void> {
  const holder = await t.db.pool.connect();
  try {
    await holder.query("begin");
    await holder.query("set local deadlock_timeout = '100ms'");
    await holder.query("select 1 from tasks where id = $1 for update", [low.id]);
    const pid = (await holder.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0]!.pid;
    const running = statement();
    running.catch(() => {});
    // The statement waits for the holder (it asked for low's row).
    await waitFor(async () => {
      const { rows } = await t.db.pool.query("select 1 from pg_stat_activity where $1 = any(pg_blocking_pids(pid))", [pid]);
      return rows.length > 0;
    }, "the statement to wait for the held row", 10_000);
    await holder.query("select 1 from tasks where id = $1 for update", [high.id]);
    await holder.query("commit");
    await running;
  } catch (err) {
    await holder.query("rollback").catch(() => {});
    throw err;
  } finally {
    holder.release();
  }
}

describe("lock order of the attempt statements", () => {
  it("heartbeat takes its attempts' rows in id order", async () => {
    const [low, high] = await runningPair();
    await withoutDeadlock(low, high, () => heartbeat(t.db.kysely, W, [], [high, low].map((r) => ({ taskId: r.id, attempt: r.attempts }))));
  });

  it("recordOutcomes takes its attempts' rows in id order", async () => {
    const [low, high] = await runningPair();
    let recorded: unknown[] = [];
    await withoutDeadlock(low, high, async () => {
      recorded = await recordOutcomes(
        t.db,
        [high, low].map((r) => ({ taskId: r.id, attempt: r.attempts, workerId: W, outcome: afterAttempt(r, { kind: "succeeded", result: {} }) })),
      );
    });
    expect(recorded.every((r) => r !== undefined)).toBe(true);
  });

  it("shortenLeases takes its attempts' rows in id order", async () => {
    const [low, high] = await runningPair();
    // Acknowledged (heartbeat_at past started_at), so the shortening applies to both.
    await heartbeat(t.db.kysely, W, [], [low, high].map((r) => ({ taskId: r.id, attempt: r.attempts })));
    await withoutDeadlock(low, high, () => shortenLeases(t.db.kysely, W, 15_000, 6_000));
  });
});
