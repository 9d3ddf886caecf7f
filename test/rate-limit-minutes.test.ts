import { describe, expect, it } from "vitest";
import { runCli } from "./helpers/cli.js";
import { peakInWindow } from "./helpers/start-windows.js";
import { useWorkerProcesses } from "./helpers/worker-processes.js";

// Issue 27's rate target at full size: a limit of 60/min with burst 10 over 5 minutes of load, real
// worker processes sharing it. test/rate-limits.test.ts checks the same bound scaled down to seconds;
// this one runs the minutes. It mostly waits (one no-op a second), so vitest.config.ts starts it first
// and the rest of the suite runs beside it.
const suite = useWorkerProcesses();

const RATE_PER_MIN = 60;
const BURST = 10;
const MINUTES = 5;

describe("a rate limit of 60/min, burst 10, over 5 minutes", () => {
  it("2 worker processes: started per sliding minute <= 70, and >= 95% of the allowed starts used", async () => {
    const pool = suite.api.database.db.pool;
    const set = await runCli(["--address", suite.api.server.url, "limit", "set", "paced", "--rate", `${RATE_PER_MIN}/min`, "--burst", String(BURST), "--queue", "paced"]);
    expect(set.code, set.stderr).toBe(0);
    // More than the 5 minutes can start (10 + 300), so the backlog never runs dry while it is measured.
    const allowed = BURST + RATE_PER_MIN * MINUTES;
    await suite.api.client.createTasks({ tasks: Array.from({ length: allowed + 20 }, (_, i) => ({ name: `paced-${i}`, type: "noop", queue: "paced" })) });
    // Quiet processes: a minute's poll (a unit coming due is found by the wake-up the worker sets
    // for it), the default heartbeat and lease.
    const quiet = { TASK_POLL_INTERVAL_MS: "60000", TASK_HEARTBEAT_MS: "3000", TASK_LEASE_MS: "15000", TASK_RECONCILE_INTERVAL_MS: "5000" };
    await Promise.all([0, 1].map(() => suite.start(quiet, ["-n", "2", "--queues", "paced"])));

    // Until 5 minutes after the first start, on the database's clock; a look every 10 s.
    const measuredMs = MINUTES * 60_000;
    for (;;) {
      const { rows } = await pool.query("select extract(epoch from now() - min(started_at)) * 1000 as ms from tasks where queue = 'paced'");
      const since = rows[0].ms === null ? 0 : Number(rows[0].ms);
      if (since > measuredMs + 1_000) break;
      await new Promise((resolve) => setTimeout(resolve, Math.min(10_000, Math.max(1_000, measuredMs + 1_500 - since))));
    }
    await suite.stopAll();

    const { rows } = await pool.query(
      `select extract(epoch from t.started_at) * 1000 as at, t.attempts, substring(h.details from 'started on (.*)$') as worker
       from tasks t join task_history h on h.task_id = t.id and h.status = 'running' where t.queue = 'paced' and t.started_at is not null`,
    );
    const starts = rows.map((r) => Number(r.at));
    const first = Math.min(...starts);
    const inMeasure = starts.filter((t) => t <= first + measuredMs).length;
    const perMinute = Array.from({ length: MINUTES }, (_, m) => starts.filter((t) => t >= first + m * 60_000 && t < first + (m + 1) * 60_000).length);
    const busiestMinute = peakInWindow(starts, 60_000);
    const processes = new Set(rows.map((r) => String(r.worker))).size;
    console.log(
      `rate limit ${RATE_PER_MIN}/min burst ${BURST} over ${MINUTES} min: ${inMeasure} started in the first ${MINUTES} min (allowed ${allowed}, ` +
        `${((100 * inMeasure) / allowed).toFixed(1)}% used), busiest sliding minute ${busiestMinute} (bound ${RATE_PER_MIN + BURST}), ` +
        `per minute ${perMinute.join(", ")}, started by ${processes} of 2 processes`,
    );
    expect(busiestMinute).toBeLessThanOrEqual(RATE_PER_MIN + BURST);
    expect(inMeasure).toBeLessThanOrEqual(allowed);
    expect(inMeasure).toBeGreaterThanOrEqual(Math.ceil(0.95 * allowed));
    // Waiting for a unit used no attempt.
    expect(rows.every((r) => r.attempts === 1)).toBe(true);
  }, 480_000);
});
