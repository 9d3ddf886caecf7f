import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "./helpers/cli.js";
import { spawnCli, type CliProcess } from "./helpers/process.js";
import { processAlive, waitFor } from "./helpers/wait.js";

let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), "task-up-"));
});
afterAll(async () => rm(dataDir, { recursive: true, force: true }));

/** Starts `task-cli up` on a free port over the test's data directory and returns its address. */
async function up(): Promise<{ proc: CliProcess; address: string }> {
  const proc = spawnCli(["up", "--port", "0", "--data-dir", dataDir, "--enable-shell", "--workers", "2"], { LOG_LEVEL: "warn" });
  const address = await waitFor(() => /listening on (http:\S+)/.exec(proc.output())?.[1], "up to print its address", 60_000);
  return { proc, address };
}

async function postmasterPid(): Promise<number> {
  return Number((await readFile(path.join(dataDir, "pgdata", "postmaster.pid"), "utf8")).split("\n")[0]);
}

describe("task-cli up", () => {
  it("runs an embedded PostgreSQL, the API and workers; stops cleanly; keeps data across restarts", async () => {
    const first = await up();
    expect(first.address).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(first.proc.output()).toMatch(/database URL: postgres:\/\/postgres:[^@]+@127\.0\.0\.1:\d+\/tasks/);
    const cli = (...args: string[]) => runCli(["--address", first.address, ...args]);

    const created = await cli("task", "create", "hello", "--type", "shell", "-p", "command=echo hello", "-o", "json");
    expect(created.code).toBe(0);
    const id = JSON.parse(created.stdout).task.id as string;
    await waitFor(async () => JSON.parse((await cli("task", "get", "--id", id, "-o", "json")).stdout).task.status === "TASK_STATUS_SUCCEEDED", "the shell task to succeed");
    const history = JSON.parse((await cli("history", "--id", id, "-o", "json")).stdout).history.map((h: { status: string }) => h.status);
    expect(history).toEqual(["TASK_STATUS_QUEUED", "TASK_STATUS_RUNNING", "TASK_STATUS_SUCCEEDED"]);

    const pgPid = await postmasterPid();
    first.proc.child.kill("SIGTERM");
    expect(await first.proc.exited).toBe(0);
    expect(processAlive(pgPid)).toBe(false);

    // Same data directory: the cluster is reused and the task is still there.
    const second = await up();
    const again = await runCli(["--address", second.address, "task", "get", "--id", id, "-o", "json"]);
    expect(JSON.parse(again.stdout).task.status).toBe("TASK_STATUS_SUCCEEDED");
    second.proc.child.kill("SIGINT");
    expect(await second.proc.exited).toBe(0);
  }, 120_000);
});
