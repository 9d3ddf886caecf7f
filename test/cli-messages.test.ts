import { execFile } from "node:child_process";
import { mkdtemp, readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appendLogLines } from "../src/store/task-logs.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";
import { createTask, setTaskRow } from "./helpers/factory.js";
import { cliPath } from "./helpers/process.js";
import { closedPort } from "./helpers/ports.js";

const execFileAsync = promisify(execFile);
let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => api?.close());
const cli = (...args: string[]) => runCli(["--address", api.server.url, ...args]);


describe("tables use the terminal's width", () => {
  it("a wide terminal shows every type's description and whole history details", async () => {
    const { types } = await api.client.listTaskTypes({});
    const wide = await runCli(["--address", api.server.url, "task", "types"], { columns: 220 });
    expect(wide.code).toBe(0);
    for (const t of types) expect(wide.stdout).toContain(t.description);
    for (const line of wide.stdout.trimEnd().split("\n")) expect(line.length).toBeLessThanOrEqual(220);

    const reason = `the quarterly report was replaced by the monthly one, see ticket OPS-1234 for the details of why`;
    const task = await createTask(api.client);
    await api.client.cancelTask({ id: task.id, reason });
    const history = await runCli(["--address", api.server.url, "history", "--id", String(task.id)], { columns: 220 });
    expect(history.stdout).toContain(`cancelled by local (admin): ${reason}`);

    // Without a terminal (a pipe, CI) tables still fit the default 100 columns.
    const narrow = await cli("task", "types");
    for (const line of narrow.stdout.trimEnd().split("\n")) expect(line.length).toBeLessThanOrEqual(100);
  });
});

describe("messages say what happened", () => {
  it("replaying an idempotency key says no task was created", async () => {
    const args = ["task", "create", "once", "--type", "noop", "--idempotency-key", "report-2026-12"];
    expect((await cli(...args)).stdout).not.toMatch(/not created/);
    const replay = await cli(...args);
    expect(replay.code).toBe(0);
    expect(replay.stdout).toMatch(/not created: idempotency key "report-2026-12" was already used by task \d+/);
  });

  it("cancelling a running task says a cancellation was requested", async () => {
    const task = await createTask(api.client);
    await setTaskRow(api.database.db.kysely, task.id, "running", { attempts: 1 });
    const res = await cli("task", "cancel", "--id", String(task.id));
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/Status\s+RUNNING/);
    expect(res.stdout).toMatch(/cancellation requested/);
  });

  it("logs of a task without output says so on stderr", async () => {
    const task = await createTask(api.client);
    const res = await cli("logs", "--id", String(task.id));
    expect(res).toEqual({ code: 0, stdout: "", stderr: `task ${task.id} has no output (yet)\n` });
  });

  it("Unauthenticated hints at --token", async () => {
    const secured = await startTestApi({ config: { apiTokens: ["s3cret"] } });
    try {
      const res = await runCli(["--address", secured.server.url, "task", "list"]);
      expect(res.code).toBe(1);
      expect(res.stderr).toMatch(/^error: Unauthenticated: .*\nhint: pass --token or set TASK_TOKEN/);
    } finally {
      await secured.close();
    }
  });

  it("a refused connection asks whether the server is running at the address", async () => {
    const address = `http://127.0.0.1:${await closedPort()}`;
    const res = await runCli(["--address", address, "task", "list"]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(`error: Unavailable: `);
    expect(res.stderr).toContain(`hint: is the server running at ${address}?`);
  });

  it("a missing required option is one line and a pointer to --help, not the whole help", async () => {
    const res = await cli("task", "get");
    expect(res.code).toBe(2);
    expect(res.stderr).toBe("error: required option '--id <id>' not specified\n(add --help for usage)\n");
  });
});

describe("a closed output pipe", () => {
  it("ends `logs | head -1` quietly", async () => {
    const stderrFile = path.join(await mkdtemp(path.join(os.tmpdir(), "cli-epipe-")), "stderr");
    const task = await createTask(api.client);
    // Several pages of GetTaskLogs (5000 lines each), so the CLI is still writing after the reader is gone.
    const lines = Array.from({ length: 12_000 }, (_, i) => ({ stream: "stdout" as const, line: `line ${i} ${"x".repeat(60)}` }));
    await appendLogLines(api.database.db.kysely, String(task.id), 1, lines);
    // A real `| head -1`: it exits after one line and closes the pipe while the CLI still writes.
    const { stdout } = await execFileAsync("bash", [
      "-c",
      `"$0" "$1" --address "$2" logs --id "$3" 2>"$4" | head -1; echo "exit $\{PIPESTATUS[0]}"`,
      process.execPath, cliPath, api.server.url, String(task.id), stderrFile,
    ]);
    expect(stdout).toBe(`line 0 ${"x".repeat(60)}\nexit 0\n`);
    expect(await readFile(stderrFile, "utf8")).toBe("");
  });
});
