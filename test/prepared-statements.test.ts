import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import type { Workers } from "../src/worker/runner.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { waitFor } from "./helpers/wait.js";
import { startTestWorkers } from "./helpers/workers.js";

let api: TestApi;
let workers: Workers;
beforeAll(async () => {
  api = await startTestApi();
  workers = await startTestWorkers(api.database, { workerConcurrency: 1 });
});
afterAll(async () => {
  await workers?.stop();
  await api?.close();
});

async function runOne(name: string): Promise<void> {
  const { task } = await api.client.createTask({ name, type: "noop" });
  await waitFor(async () => (await api.client.getTask({ id: task!.id })).task?.status === TaskStatus.SUCCEEDED, `${name} to succeed`);
}

describe("prepared statements", () => {
  it("keep working on connections that prepared them after a migration adds a column (rolling upgrade)", async () => {
    // Prepare the create, claim and record statements on the server's and the worker's connections.
    for (let i = 0; i < 3; i++) await runOne(`before-${i}`);
    await api.database.db.pool.query("alter table tasks add column added_by_a_newer_version integer");
    for (let i = 0; i < 3; i++) await runOne(`after-${i}`);
    const { rows } = await api.database.db.pool.query("select count(*)::int as n from tasks where status = 'succeeded'");
    expect(rows[0].n).toBe(6);
  });
});
