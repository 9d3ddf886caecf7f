import { describe, expect, it } from "vitest";
import { TaskStatus } from "../../src/gen/task/v1/task_pb.js";
import { checkTaskHistory } from "../../scripts/chaos/check-history.js";
import { useWorkerProcesses } from "../helpers/worker-processes.js";
import type { CliProcess } from "../helpers/process.js";
import { waitFor } from "../helpers/wait.js";

// Outcomes are recorded write-behind (src/worker/outcome-writer.ts): a worker killed between an
// attempt's end and the flush of its outcome must lose nothing and record nothing twice.
const suite = useWorkerProcesses();

const pool = () => suite.api.database.db.pool;
const worker = (env: Record<string, string> = {}): Promise<CliProcess> => suite.start(env);

describe("write-behind outcomes", () => {
  it("kill -9 with outcomes not yet flushed: every task is retried and succeeds once, with a legal history", async () => {
    // A flush a minute away: the attempts end, their outcomes wait in memory. (Their jobs are gone
    // from the claim on; the worker's heartbeat says when none of its slots is busy any more.)
    const victim = await worker({ TASK_OUTCOME_FLUSH_MS: "60000" });
    const { tasks } = await suite.api.client.createTasks({ tasks: Array.from({ length: 12 }, (_, i) => ({ name: `unflushed-${i}`, type: "noop" })) });
    const ids = tasks.map((t) => String(t.id));
    await waitFor(async () => {
      const { rows } = await pool().query(
        `select count(*) filter (where t.status = 'running') as running,
                (select count(*) from graphile_worker.jobs j where j.key = any(array(select 'task:' || x from unnest($1::text[]) x))) as jobs,
                (select count(*) from workers w where w.pid = $2 and w.busy = 0 and w.heartbeat_at > max(t.started_at) + interval '1 second') as idle
         from tasks t where t.id = any($1::bigint[])`,
        [ids, victim.child.pid],
      );
      return Number(rows[0].running) === ids.length && Number(rows[0].jobs) === 0 && Number(rows[0].idle) === 1;
    }, "every attempt to end with its outcome unflushed (task RUNNING, no slot busy)");
    victim.child.kill("SIGKILL");
    await victim.exited;

    const rescuer = await worker();
    await waitFor(async () => {
      const { rows } = await pool().query("select count(*) as n from tasks where id = any($1::bigint[]) and status = 'succeeded'", [ids]);
      return Number(rows[0].n) === ids.length;
    }, "every task to succeed on the other worker", 60_000);
    rescuer.child.kill("SIGTERM");
    await rescuer.exited;

    const { rows: history } = await pool().query<{ task_id: string; status: string; attempt: number }>(
      "select task_id::text, status::text, attempt from task_history where task_id = any($1::bigint[]) order by id",
      [ids],
    );
    for (const id of ids) {
      const own = history.filter((h) => h.task_id === id);
      const task = (await suite.api.client.getTask({ id: BigInt(id) })).task!;
      expect(task.status).toBe(TaskStatus.SUCCEEDED);
      expect(checkTaskHistory({ id, status: "succeeded", attempts: task.attempts, history: own })).toEqual([]);
      // Attempt 1 ran on the killed worker (its outcome died with it), attempt 2 succeeded; once.
      expect(own.filter((h) => h.status === "succeeded")).toEqual([{ task_id: id, status: "succeeded", attempt: 2 }]);
      expect(own.filter((h) => h.status === "running").map((h) => h.attempt)).toEqual([1, 2]);
    }
    const { rows: left } = await pool().query("select count(*) as n from graphile_worker.jobs where key = any(array(select 'task:' || x from unnest($1::text[]) x))", [ids]);
    expect(Number(left[0].n)).toBe(0);
  }, 120_000);

  it("a stopping worker flushes the outcomes it holds before it exits", async () => {
    const w = await worker({ TASK_OUTCOME_FLUSH_MS: "60000" });
    const { tasks } = await suite.api.client.createTasks({ tasks: Array.from({ length: 5 }, (_, i) => ({ name: `flushed-at-stop-${i}`, type: "noop" })) });
    const ids = tasks.map((t) => String(t.id));
    await waitFor(async () => {
      const { rows } = await pool().query(
        `select count(*) filter (where t.status = 'running') as running,
                (select count(*) from workers w where w.pid = $2 and w.busy = 0 and w.heartbeat_at > max(t.started_at) + interval '1 second') as idle
         from tasks t where t.id = any($1::bigint[])`,
        [ids, w.child.pid],
      );
      return Number(rows[0].running) === ids.length && Number(rows[0].idle) === 1;
    }, "the attempts to end with their outcomes held");
    const stoppedAt = Date.now();
    w.child.kill("SIGTERM");
    await w.exited;
    // At once, not when the minute-long flush timer would have fired.
    expect(Date.now() - stoppedAt).toBeLessThan(30_000);
    const { rows } = await pool().query("select status::text, attempts from tasks where id = any($1::bigint[])", [ids]);
    expect(rows).toEqual(ids.map(() => ({ status: "succeeded", attempts: 1 })));
  }, 60_000);
});
