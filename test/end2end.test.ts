import { mkdtemp, readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { End2EndReport } from "../src/cli/end2end/report.js";
import type { Workers } from "../src/worker/runner.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";
import { startTestWorkers } from "./helpers/workers.js";

let api: TestApi;
let workers: Workers;
beforeAll(async () => {
  api = await startTestApi();
  workers = await startTestWorkers(api.database, { outboxDir: await mkdtemp(path.join(os.tmpdir(), "e2e-outbox-")) });
});
afterAll(async () => {
  await workers?.stop();
  await api?.close();
});

describe("task-cli end2end", () => {
  it("creates its tasks, waits for them, and reports figures consistent with the database", async () => {
    // Tasks that are not the run's own must not count: one queued far in the future.
    await api.client.createTask({ name: "bystander", type: "noop", runAt: { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600) } });
    const jsonFile = path.join(await mkdtemp(path.join(os.tmpdir(), "e2e-")), "report.json");
    const res = await runCli(["--address", api.server.url, "end2end", "-n", "40", "--types", "run_query,send_email,shell,noop", "--batch", "7", "--concurrency", "3", "--json", jsonFile]);
    expect(res.stderr).not.toMatch(/^error/m);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/create→start\s+p50 [\d.]+ms\s+p90 [\d.]+ms\s+p99 [\d.]+ms\s+max [\d.]+ms/);
    expect(res.stdout.trim().split("\n").at(-1)).toBe("PASS");

    const report = JSON.parse(await readFile(jsonFile, "utf8")) as End2EndReport;
    expect(report).toMatchObject({ tasks: 40, created: 40, succeeded: 40, failed: 0, unfinished: 0, passed: true });
    expect(report.by_type).toEqual({
      run_query: { succeeded: 10, failed: 0, other: 0 },
      send_email: { succeeded: 10, failed: 0, other: 0 },
      shell: { succeeded: 10, failed: 0, other: 0 },
      noop: { succeeded: 10, failed: 0, other: 0 },
    });
    expect(report.latency_ms.create_to_finish.count).toBe(40);
    expect(report.latency_ms.create_to_start.p50).toBeLessThanOrEqual(report.latency_ms.create_to_finish.p50);

    const { rows } = await api.database.db.pool.query(
      `select count(*)::int as n,
              max(extract(epoch from finished_at - created_at) * 1000) as max_ms
       from tasks where name like 'end2end-%' and status = 'succeeded'`,
    );
    expect(rows[0].n).toBe(40);
    expect(Math.abs(report.latency_ms.create_to_finish.max - Number(rows[0].max_ms))).toBeLessThan(1);
  });

  it("rejects an unknown type before creating anything", async () => {
    const before = await api.database.db.pool.query("select count(*)::int as n from tasks");
    const bad = await runCli(["--address", api.server.url, "end2end", "-n", "4", "--types", "run_query,nope"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/no task type "nope"/);
    const after = await api.database.db.pool.query("select count(*)::int as n from tasks");
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });

  it("reports failures by type and exits 1 when tasks fail beyond --allow-failures", async () => {
    // run_query against a target the workers cannot reach: every attempt fails.
    const failing = await startTestApi({ config: { queryTargets: { playground: "postgres://nobody:x@127.0.0.1:1/none" } } });
    const failingWorkers = await startTestWorkers(failing.database, {
      queryTargets: { playground: "postgres://nobody:x@127.0.0.1:1/none" },
      backoffBaseMs: 10,
      backoffMaxMs: 20,
    });
    try {
      const res = await runCli(["--address", failing.server.url, "end2end", "-n", "3", "--types", "run_query", "--timeout", "60s", "-o", "json"]);
      expect(res.code).toBe(1);
      const report = JSON.parse(res.stdout) as End2EndReport;
      expect(report).toMatchObject({ failed: 3, passed: false });
      expect(report.failures[0]).toMatchObject({ type: "run_query", count: 3 });
      expect(report.failures[0]!.sample_error).toMatch(/ECONNREFUSED|connect/);
      const allowed = await runCli(["--address", failing.server.url, "end2end", "-n", "2", "--types", "run_query", "--allow-failures", "2"]);
      expect(allowed.code).toBe(0);
    } finally {
      await failingWorkers.stop();
      await failing.close();
    }
  });
});
