import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ShellCheckLevel } from "../src/gen/task/v1/task_pb.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";
import { expectConnectError, rowCounts } from "./helpers/factory.js";
import { scheduleClientFor, scheduleSpec } from "./helpers/schedules.js";

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => api?.close());

const shell = (command: string, strictShellCheck = false) => api.client.createTask({ name: "checked", type: "shell", parameters: { command }, strictShellCheck });
const cli = (...args: string[]) => runCli(["--address", api.server.url, ...args]);

/** scripts/test-prereqs.sh installs it (Debian package shellcheck); without it these tests must fail, not pass vacuously. */
const shellcheckInstalled = spawnSync("shellcheck", ["--version"], { stdio: "ignore" }).status === 0;

/**
 * Every shell command README.md shows: `-p command='...'` / `-p command="..."` on a task-cli line,
 * and `"command": "..."` in a JSON body. Double-quoted values are unquoted as the shell would.
 */
function readmeShellCommands(): string[] {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const commands: string[] = [];
  for (const m of readme.matchAll(/-p command=(?:'([^']*)'|"((?:[^"\\]|\\.)*)")/g)) {
    commands.push(m[1] ?? m[2]!.replace(/\\([\\"$`])/g, "$1"));
  }
  for (const m of readme.matchAll(/"command":\s*("(?:[^"\\]|\\.)*")/g)) commands.push(JSON.parse(m[1]!) as string);
  return [...new Set(commands)];
}

describe("a shell command is parsed (bash -n) when the task is created", () => {
  it('refuses `echo "unterminated` with InvalidArgument naming the line, and writes nothing', async () => {
    const before = await rowCounts(api.database.db.kysely);
    const err = await expectConnectError(shell('echo "unterminated'), Code.InvalidArgument, /parameters\.command: has a syntax error at line 1: unexpected EOF/);
    expect(err.rawMessage).toContain("matching `\"'");
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
  });

  it("names the line of a syntax error further down, and the task of a batch", async () => {
    await expectConnectError(shell("echo one\necho two\nif true; then echo three; fi fi"), Code.InvalidArgument, /line 3: syntax error near unexpected token `fi'/);
    await expectConnectError(
      api.client.createTasks({ tasks: [{ name: "ok", type: "shell", parameters: { command: "true" } }, { name: "bad", type: "shell", parameters: { command: "done" } }] }),
      Code.InvalidArgument,
      /^tasks\[1\]\.parameters\.command: has a syntax error at line 1/,
    );
  });

  it("passes every shell command the README shows, except the one it shows refused", async () => {
    const commands = readmeShellCommands();
    // The README shows at least these: if the extraction stops finding them, this must fail.
    expect(commands).toContain("echo hello");
    expect(commands).toContain('echo "unterminated');
    expect(commands.length).toBeGreaterThanOrEqual(7);
    for (const command of commands.filter((c) => c !== 'echo "unterminated')) {
      const res = await shell(command).catch((err: unknown) => {
        throw new Error(`README command refused: ${command}\n${String(err)}`);
      });
      expect(res.created, command).toBe(true);
    }
  });

  it("a schedule's shell template is checked the same way", async () => {
    const schedules = scheduleClientFor(api.server.url);
    await expectConnectError(
      schedules.createSchedule({ spec: scheduleSpec({ name: "broken-nightly", task: { type: "shell", parameters: { command: "if true; then echo {{scheduled_at}}" } } }) }),
      Code.InvalidArgument,
      /^task\.parameters\.command: has a syntax error at line \d+: syntax error: unexpected end of file/,
    );
    const { schedule } = await schedules.createSchedule({ spec: scheduleSpec({ name: "nightly", task: { type: "shell", parameters: { command: "echo {{scheduled_at}}" } } }) });
    expect(schedule?.spec?.name).toBe("nightly");
    await expectConnectError(
      schedules.updateSchedule({ name: "nightly", spec: scheduleSpec({ name: "nightly", task: { type: "shell", parameters: { command: "done" } } }) }),
      Code.InvalidArgument,
      /task\.parameters\.command: has a syntax error/,
    );
  });

  it("does not run the command, and the check sees none of the server's environment", async () => {
    // `bash -n` only parses: nothing is written. An empty environment: no BASH_ENV can run code either.
    const res = await shell("touch /tmp/shell-check-must-not-run-$$; echo $HOME");
    expect(res.created).toBe(true);
    expect(spawnSync("sh", ["-c", "ls /tmp/shell-check-must-not-run-* 2>/dev/null"]).stdout.toString()).toBe("");
  });
});

describe("shellcheck's findings come back with the created task", () => {
  it("as warnings, never blocking a valid command by default", async () => {
    expect(shellcheckInstalled, "shellcheck must be installed (scripts/test-prereqs.sh)").toBe(true);
    const res = await shell('cd /tmp\nrm -rf $dir/*');
    expect(res.created).toBe(true);
    expect(res.task?.id).toBeGreaterThan(0n);
    const codes = res.warnings.map((w) => `${w.code}@${w.line}`);
    expect(codes).toEqual(expect.arrayContaining(["SC2164@1", "SC2115@2"]));
    expect(res.warnings.every((w) => w.field === "parameters.command")).toBe(true);
    expect(res.warnings.find((w) => w.code === "SC2115")?.level).toBe(ShellCheckLevel.WARNING);
  });

  it("in a batch, each names its task's field", async () => {
    const res = await api.client.createTasks({
      tasks: [
        { name: "clean", type: "shell", parameters: { command: 'echo "ok"' } },
        { name: "noop", type: "noop" },
        { name: "lint", type: "shell", parameters: { command: "cd /tmp" } },
      ],
    });
    expect(res.tasks).toHaveLength(3);
    expect(res.warnings.map((w) => `${w.field} ${w.code}`)).toEqual(["tasks[2].parameters.command SC2164"]);
  });

  it("a clean command has none", async () => {
    expect((await shell('echo "hello"')).warnings).toEqual([]);
  });

  it("strict_shell_check refuses error-level findings; without it the same command is created", async () => {
    const before = await rowCounts(api.database.db.kysely);
    await expectConnectError(shell("[ 1 = 1]", true), Code.InvalidArgument, /line 1: You need a space before the \]\. \(shellcheck SC1020; refused by strict_shell_check\)/);
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
    const res = await shell("[ 1 = 1]");
    expect(res.created).toBe(true);
    expect(res.warnings.some((w) => w.level === ShellCheckLevel.ERROR && w.code === "SC1020")).toBe(true);
    // Only error-level findings count under strict: warnings alone pass.
    expect((await shell("cd /tmp", true)).created).toBe(true);
  });

  it("task-cli task create prints them on stderr and --strict refuses errors", async () => {
    const res = await cli("task", "create", "lint", "--type", "shell", "-p", "command=cd /tmp", "-o", "json");
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout).created).toBe(true);
    expect(res.stderr).toMatch(/^warning: parameters\.command line 1:1: Use 'cd \.\.\. \|\| exit'.* \[SC2164, warning\]$/m);
    const broken = await cli("task", "create", "broken", "--type", "shell", "-p", 'command=echo "unterminated');
    expect(broken.code).not.toBe(0);
    // As the README shows it.
    expect(broken.stderr).toBe("error: InvalidArgument: parameters.command: has a syntax error at line 1: unexpected EOF while looking for matching `\"'\n");
    const strict = await cli("task", "create", "lint", "--type", "shell", "-p", "command=[ 1 = 1]", "--strict");
    expect(strict.code).not.toBe(0);
    expect(strict.stderr).toMatch(/SC1020; refused by strict_shell_check/);
  });
});
