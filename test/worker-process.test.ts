import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { spawnCli } from "./helpers/process.js";
import { waitFor } from "./helpers/wait.js";

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => api?.close());

async function status(id: bigint): Promise<TaskStatus | undefined> {
  return (await api.client.getTask({ id })).task?.status;
}

describe("task-cli serve", () => {
  it("SIGTERM: running attempts finish within the grace period, the rest are released for retry, exit 0", async () => {
    const worker = spawnCli(["serve", "-n", "4"], {
      DATABASE_URL: api.database.url,
      TASK_ENABLE_SHELL: "true",
      TASK_SHUTDOWN_GRACE_MS: "2000",
      TASK_HEARTBEAT_MS: "200",
      LOG_LEVEL: "info",
    });
    try {
      const quick = await api.client.createTasks({
        tasks: [1, 2, 3].map((i) => ({ name: `quick-${i}`, type: "shell", parameters: { command: "sleep 1; echo done" } })),
      });
      const { task: stuck } = await api.client.createTask({ name: "stuck", type: "shell", parameters: { command: "sleep 600" } });
      const ids = [...quick.tasks.map((t) => t.id), stuck!.id];
      await waitFor(async () => {
        const statuses = await Promise.all(ids.map(status));
        return statuses.every((s) => s === TaskStatus.RUNNING);
      }, "all four tasks to be running", 30_000);

      worker.child.kill("SIGTERM");
      expect(await waitFor(() => worker.exited, "the worker to exit", 20_000)).toBe(0);

      for (const t of quick.tasks) expect(await status(t.id)).toBe(TaskStatus.SUCCEEDED);
      const { task } = await api.client.getTask({ id: stuck!.id });
      expect(task?.status).toBe(TaskStatus.RETRYING);
      expect(task?.lastError).toBe("interrupted: the worker shut down");
      const history = (await api.client.getTaskHistory({ id: stuck!.id })).history;
      expect(history.at(-1)?.details).toBe("attempt 1 failed: interrupted: the worker shut down; retrying now");
      // Released, not lost: its next job is waiting for another worker.
      const jobs = await api.database.db.pool.query("select locked_at from graphile_worker.jobs where key = $1", [`task:${stuck!.id}`]);
      expect(jobs.rows).toEqual([{ locked_at: null }]);
      await api.client.cancelTask({ id: stuck!.id });
    } finally {
      worker.child.kill("SIGKILL");
    }
  }, 60_000);

  it("refuses to start without DATABASE_URL, with a clear message and a non-zero exit", async () => {
    const worker = spawnCli(["serve"], {});
    expect(await worker.exited).not.toBe(0);
    expect(worker.output()).toMatch(/DATABASE_URL is not set/);
  });
});
