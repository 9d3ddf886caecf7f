import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";

let api: TestApi;
let dir: string;
let cli: (...args: string[]) => ReturnType<typeof runCli>;
beforeAll(async () => {
  api = await startTestApi();
  dir = await mkdtemp(path.join(os.tmpdir(), "schedules-"));
  cli = (...args) => runCli(["--address", api.server.url, ...args]);
});
afterAll(async () => {
  await api?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function storedNames(): Promise<string[]> {
  const { rows } = await api.database.db.pool.query<{ name: string }>("select name from schedules order by name");
  return rows.map((r) => r.name);
}

describe("task-cli schedule", () => {
  it("create, list, get, pause, resume, trigger, delete", async () => {
    const created = await cli(
      "schedule", "create", "nightly-report", "--cron", "0 7 * * *", "--tz", "Europe/Paris", "--type", "send_email",
      "-p", "to=ops@example.com", "-p", "subject=Report for {{scheduled_date}}", "-p", "body=see attached",
      "--overlap", "skip", "--catch-up", "latest", "--max-attempts", "2", "--timeout", "1m",
    );
    expect(created.stderr).toBe("");
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/Name\s+nightly-report/);
    expect(created.stdout).toMatch(/Time zone\s+Europe\/Paris/);
    expect(created.stdout).toMatch(/Next run\s+\d{4}-\d\d-\d\dT\d\d:00:00.000Z \(in /);

    const list = await cli("schedule", "list");
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/NAME\s+CRON\s+ZONE\s+TYPE\s+NEXT RUN\s+LAST RUN\s+PAUSED/);
    expect(list.stdout).toMatch(/nightly-report\s+0 7 \* \* \*\s+Europe\/Paris\s+send_email\s+\S+ \(in \S+\)\s+-\s+no/);

    const triggered = await cli("schedule", "trigger", "nightly-report", "-o", "json");
    expect(triggered.code).toBe(0);
    const task = JSON.parse(triggered.stdout).task;
    expect(task.parameters.subject).toMatch(/^Report for \d{4}-\d\d-\d\d$/);
    expect(task.scheduleId).not.toBe("0");

    const listed = await cli("schedule", "ls");
    expect(listed.stdout).toMatch(new RegExp(`nightly-report .* \\d+s ago #${task.id} QUEUED\\s+no`));
    const get = await cli("schedule", "get", "nightly-report");
    expect(get.stdout).toMatch(/Overlap\s+skip/);
    expect(get.stdout).toMatch(/Catch-up\s+latest/);
    expect(get.stdout).toMatch(new RegExp(`Recent tasks:\\n.*\\n\\s*${task.id}\\s+\\S+Z\\s+QUEUED`));

    expect((await cli("schedule", "pause", "nightly-report")).stdout).toMatch(/Paused\s+yes/);
    expect((await cli("schedule", "list")).stdout).toMatch(/nightly-report .*\byes\s*$/m);
    expect((await cli("schedule", "resume", "nightly-report")).stdout).toMatch(/Paused\s+no/);
    expect((await cli("schedule", "delete", "nightly-report")).stdout).toBe("deleted nightly-report\n");
    expect(await storedNames()).toEqual([]);
  });

  it("bad input: one line on stderr naming the field, a non-zero exit, nothing stored", async () => {
    const cases: [string[], number, RegExp][] = [
      [["--cron", "* * *", "--type", "noop"], 1, /^error: InvalidArgument: cron: /],
      [["--cron", "* * * * *", "--tz", "Moon/Base", "--type", "noop"], 1, /^error: InvalidArgument: time_zone: unknown time zone "Moon\/Base"/],
      [["--cron", "* * * * *", "--type", "fax"], 1, /^error: InvalidArgument: task.type: unknown task type "fax"/],
      [["--cron", "* * * * *", "--type", "noop", "-p", "sleep_ms=soon"], 1, /^error: InvalidArgument: task.parameters.sleep_ms: /],
      [["--cron", "* * * * *", "--type", "noop", "--overlap", "sometimes"], 2, /^error: --overlap: "sometimes" is not one of allow, skip, cancel_previous/],
      [["--cron", "* * * * *", "--type", "noop", "--catch-up", "skip", "--backfill", "3"], 2, /^error: --backfill: only with --catch-up backfill/],
    ];
    for (const [flags, code, message] of cases) {
      const res = await cli("schedule", "create", "bad", ...flags);
      expect(res.stderr, flags.join(" ")).toMatch(message);
      expect(res.stderr.trim().split("\n")).toHaveLength(1);
      expect(res.code, flags.join(" ")).toBe(code);
    }
    expect(await storedNames()).toEqual([]);
    expect((await cli("schedule", "create", "dup", "--cron", "@hourly", "--type", "noop")).code).toBe(0);
    const dup = await cli("schedule", "create", "dup", "--cron", "@daily", "--type", "noop");
    expect(dup.stderr).toBe('error: AlreadyExists: name: a schedule named "dup" already exists\n');
    expect(dup.code).toBe(1);
    expect((await cli("schedule", "get", "nope")).stderr).toBe('error: NotFound: schedule "nope" not found\n');
    await cli("schedule", "delete", "dup");
  });
});

describe("task-cli schedule apply", () => {
  const file = () => path.join(dir, "schedules.yaml");
  const v1 = `
schedules:
  - name: heartbeat
    cron: "* * * * *"
    type: noop
  - name: nightly-report
    cron: "0 7 * * *"
    time_zone: Europe/Paris
    type: send_email
    parameters:
      to: ops@example.com
      subject: "Report for {{scheduled_date}}"
      body: see attached
    overlap: skip
    catch_up: backfill
    backfill_limit: 3
    timeout: 2m
`;

  it("creates, then changes nothing on a second run, updates what changed, and --prune deletes the rest", async () => {
    await writeFile(file(), v1);
    const first = await cli("schedule", "apply", "-f", file());
    expect(first.stderr).toBe("");
    expect(first.stdout).toBe("created heartbeat\ncreated nightly-report\n");
    const stored = await api.database.db.pool.query("select name, updated_at, next_run_at from schedules order by name");

    const second = await cli("schedule", "apply", "-f", file());
    expect(second.stdout).toBe("unchanged heartbeat\nunchanged nightly-report\n");
    expect((await api.database.db.pool.query("select name, updated_at, next_run_at from schedules order by name")).rows).toEqual(stored.rows);

    // Someone adds a schedule by hand; the file changes one schedule and drops the other.
    await cli("schedule", "create", "manual", "--cron", "@hourly", "--type", "noop");
    await writeFile(file(), v1.replace("    type: noop\n", "    type: noop\n    parameters: {sleep_ms: 100}\n"));
    const third = await cli("schedule", "apply", "-f", file());
    expect(third.stdout).toBe("updated heartbeat\nunchanged nightly-report\n");
    expect(await storedNames()).toEqual(["heartbeat", "manual", "nightly-report"]);

    const pruned = await cli("schedule", "apply", "-f", file(), "--prune");
    expect(pruned.stdout).toBe("unchanged heartbeat\nunchanged nightly-report\ndeleted manual\n");
    expect(await storedNames()).toEqual(["heartbeat", "nightly-report"]);
    const row = await api.database.db.pool.query("select catch_up, backfill_limit, overlap, timeout_ms, time_zone from schedules where name = 'nightly-report'");
    expect(row.rows[0]).toEqual({ catch_up: "backfill", backfill_limit: 3, overlap: "skip", timeout_ms: 120_000, time_zone: "Europe/Paris" });
  });

  it("refuses a file with unknown keys, repeated names or an invalid schedule, naming the entry", async () => {
    const before = await storedNames();
    const cases: [string, number, RegExp][] = [
      ["schedules:\n  - name: a\n    cron: '* * * * *'\n    type: noop\n    cronn: x\n", 2, /schedules\.0: Unrecognized key: "cronn"/],
      ["schedules:\n  - {name: a, cron: '* * * * *', type: noop}\n  - {name: a, cron: '@daily', type: noop}\n", 2, /schedules\[1\] \(a\): name: "a" appears twice/],
      ["schedules:\n  - {name: zz-bad, cron: '* * * * *', type: noop, time_zone: Atlantis}\n", 1, /^error: InvalidArgument: .*schedules.yaml: schedule "zz-bad": time_zone: unknown time zone "Atlantis"/],
      ["schedules: [\n", 2, /not valid YAML/],
    ];
    for (const [text, code, message] of cases) {
      await writeFile(file(), text);
      const res = await cli("schedule", "apply", "-f", file());
      expect(res.stderr).toMatch(message);
      expect(res.code).toBe(code);
    }
    expect(await storedNames()).toEqual(before);
    expect((await cli("schedule", "apply", "-f", path.join(dir, "missing.yaml"))).stderr).toMatch(/^error: --file: cannot read .*missing.yaml \(ENOENT\)/);
  });
});
