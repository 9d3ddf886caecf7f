import { afterAll, beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => api?.close());
const cli = (...args: string[]) => runCli(["--address", api.server.url, ...args]);

describe("task create", () => {
  it("creates a shell task from -p key=value and prints it, id first", async () => {
    const res = await cli("task", "create", "hello", "--type", "shell", "-p", "command=echo hi");
    expect(res.code).toBe(0);
    expect(res.stderr).toBe("");
    const firstLine = res.stdout.trim().split("\n")[0]!;
    expect(firstLine).toMatch(/^\s*ID\s+\d+/);
    expect(res.stdout).toMatch(/Status\s+QUEUED/);
  });

  it("prints protobuf JSON with -o json, and parses JSON-looking values", async () => {
    const res = await cli("t", "c", "query", "--type", "run_query", "-p", "sql=select 1", "-p", "max_rows=5", "--priority", "7", "--timeout", "1m30s", "-o", "json");
    expect(res.code).toBe(0);
    const body = JSON.parse(res.stdout);
    expect(body.created).toBe(true);
    expect(body.task).toMatchObject({ name: "query", type: "run_query", status: "TASK_STATUS_QUEUED", priority: 7, timeout: "90s" });
    expect(body.task.parameters).toMatchObject({ sql: "select 1", max_rows: 5 });
    const row = await api.database.db.pool.query("select timeout_ms, priority from tasks where id = $1", [body.task.id]);
    expect(row.rows[0]).toEqual({ timeout_ms: 90_000, priority: 7 });
  });

  it("accepts --params-json and --delay", async () => {
    const res = await cli("task", "create", "later", "--type", "noop", "--params-json", '{"sleep_ms": 5}', "--delay", "10m", "-o", "yaml");
    expect(res.code).toBe(0);
    const body = YAML.parse(res.stdout);
    expect(body.task.parameters).toEqual({ sleep_ms: 5 });
    expect(new Date(body.task.runAt).getTime()).toBeGreaterThan(Date.now() + 9 * 60_000);
  });

  it("exits non-zero with the Connect code on stderr for invalid parameters", async () => {
    const res = await cli("task", "create", "bad", "--type", "send_email", "-p", "to=not-an-address");
    expect(res.code).toBe(1);
    expect(res.stdout).toBe("");
    expect(res.stderr).toMatch(/^error: InvalidArgument: .*parameters\.to/);
  });

  it.each([
    [["--priority", "high"], /--priority/],
    [["--timeout", "soon"], /--timeout/],
    [["-p", "novalue"], /key=value/],
    [["--run-at", "tomorrow"], /--run-at/],
  ])("rejects bad flag %j without calling the server", async (flags, message) => {
    const before = await api.database.db.pool.query("select count(*)::int as n from tasks");
    const res = await cli("task", "create", "x", "--type", "noop", ...flags);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(message);
    const after = await api.database.db.pool.query("select count(*)::int as n from tasks");
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });
});

describe("reading tasks", () => {
  it("gets a task in each output format", async () => {
    const created = JSON.parse((await cli("task", "create", "fmt", "--type", "noop", "-o", "json")).stdout);
    const id = created.task.id as string;
    const table = await cli("task", "get", "--id", id);
    expect(table.stdout).toMatch(new RegExp(`ID\\s+${id}`));
    const json = JSON.parse((await cli("task", "g", "--id", id, "-o", "json")).stdout);
    expect(json.task.id).toBe(id);
    const yaml = YAML.parse((await cli("task", "get", "--id", id, "-o", "yaml")).stdout);
    expect(yaml.task.name).toBe("fmt");
  });

  it("lists with filters and paging and shows the total", async () => {
    const res = await cli("task", "ls", "--type", "noop", "-c", "1", "-n", "1", "-o", "json");
    expect(res.code).toBe(0);
    const body = JSON.parse(res.stdout);
    expect(body.tasks).toHaveLength(1);
    expect(body.tasks[0].type).toBe("noop");
    expect(Number(body.totalCount)).toBeGreaterThanOrEqual(2);
    const table = await cli("task", "list", "--status", "queued");
    expect(table.stdout).toMatch(/total\)/);
    const bad = await cli("task", "list", "--status", "sleeping");
    expect(bad.code).toBe(2);
  });

  it("counts every status", async () => {
    const res = await cli("task", "stat", "-o", "json");
    const body = JSON.parse(res.stdout);
    expect(body.counts.map((c: { status: string }) => c.status)).toEqual([
      "TASK_STATUS_QUEUED",
      "TASK_STATUS_RUNNING",
      "TASK_STATUS_RETRYING",
      "TASK_STATUS_SUCCEEDED",
      "TASK_STATUS_FAILED",
      "TASK_STATUS_CANCELLED",
      "TASK_STATUS_PAUSED",
      "TASK_STATUS_EXPIRED",
    ]);
    const table = await cli("task", "s");
    expect(table.stdout).toMatch(/CANCELLED\s+0/);
  });

  it("shows history, cancels and retries", async () => {
    const id = JSON.parse((await cli("task", "create", "h", "--type", "noop", "-o", "json")).stdout).task.id as string;
    expect((await cli("task", "cancel", "--id", id, "--reason", "not needed")).code).toBe(0);
    expect((await cli("task", "retry", "--id", id)).code).toBe(0);
    const history = JSON.parse((await cli("history", "--id", id, "-o", "json")).stdout).history;
    expect(history.map((h: { status: string }) => h.status)).toEqual(["TASK_STATUS_QUEUED", "TASK_STATUS_CANCELLED", "TASK_STATUS_QUEUED"]);
    expect(history[1].details).toContain("not needed");
    const table = await cli("h", "--id", id);
    expect(table.stdout).toMatch(/manual retry/);
  });

  it("reports NotFound with a non-zero exit", async () => {
    const res = await cli("task", "get", "--id", "424242");
    expect(res.code).toBe(1);
    expect(res.stderr.trim()).toBe("error: NotFound: task 424242 not found");
  });

  it("lists task types", async () => {
    const res = await cli("task", "types");
    expect(res.stdout).toMatch(/shell\s+yes\s+command/);
  });

  it("keeps tables within 100 columns", async () => {
    await cli("task", "create", "x".repeat(150), "--type", "shell", "-p", `command=echo ${"y".repeat(200)}`);
    for (const args of [["task", "types"], ["task", "list"], ["task", "get", "--id", "1"], ["task", "status"], ["history", "--id", "1"]]) {
      const res = await cli(...args);
      expect(res.code).toBe(0);
      for (const line of res.stdout.split("\n")) expect(line.length, `${args.join(" ")}: ${line}`).toBeLessThanOrEqual(100);
    }
  });
});

describe("global flags", () => {
  it("rejects an unknown output format", async () => {
    const res = await cli("task", "status", "-o", "xml");
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/xml/);
  });

  it("fails clearly when no server listens", async () => {
    const res = await runCli(["--address", "http://127.0.0.1:1", "task", "status"]);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^error: Unavailable/);
  });
});
