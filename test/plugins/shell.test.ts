import { execFileSync } from "node:child_process";
import { mkdtemp, realpath, rm, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { shellPlugin } from "../../src/plugins/shell.js";
import { eventually, pluginContext, settleWithin, type TestPluginContext } from "../helpers/plugin-context.js";
import { processesMatching, uniqueSleep } from "../helpers/processes.js";

const shell = shellPlugin({ enabled: true, killGraceMs: 500 });

function run(raw: unknown, ctx: TestPluginContext) {
  return shell.run(shell.parameters.parse(raw), ctx);
}

/** Waits until `count` processes carry the marker. */
async function running(marker: string, count: number): Promise<void> {
  await eventually(() => processesMatching(marker).length >= count, `${count} processes with ${marker}`);
}

async function expectAllGone(marker: string): Promise<void> {
  await eventually(() => processesMatching(marker).length === 0, `every process with ${marker} to exit`);
}

const envBefore = { DATABASE_URL: process.env.DATABASE_URL, SOME_SECRET: process.env.SOME_SECRET };

afterEach(() => {
  for (const [name, value] of Object.entries(envBefore)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

describe("shell plugin", () => {
  it("captures stdout and stderr lines in order per stream, including a last line without newline", async () => {
    const ctx = pluginContext();
    const result = await run({ command: "echo out1; echo err1 >&2; echo out2; echo err2 >&2; printf 'out3'" }, ctx);

    expect(ctx.linesOf("stdout")).toEqual(["out1", "out2", "out3"]);
    expect(ctx.linesOf("stderr")).toEqual(["err1", "err2"]);
    expect(result).toEqual({ exit_code: 0, stdout_lines: 3, stderr_lines: 2 });
  });

  it("rejects a non-zero exit with the exit code and the last stderr line", async () => {
    const ctx = pluginContext();
    const outcome = run({ command: "echo first >&2; echo 'disk is full' >&2; exit 3" }, ctx);

    await expect(outcome).rejects.toThrow(Error);
    await expect(outcome).rejects.toThrow(/exit code 3: disk is full/);
    expect(ctx.linesOf("stderr")).toEqual(["first", "disk is full"]);
  });

  it("runs the command in a clean environment with the task's variables and its own env", async () => {
    vi.stubEnv("DATABASE_URL", "postgres://admin:pw@db.internal/prod");
    vi.stubEnv("SOME_SECRET", "hunter2-secret-value");
    const ctx = pluginContext({ taskId: "4242", attempt: 2 });

    await run({ command: "env", env: { GREETING: "hello world", EMPTY: "" } }, ctx);

    const output = ctx.linesOf("stdout");
    const env = new Map(output.map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
    expect(env.has("DATABASE_URL")).toBe(false);
    expect(env.has("SOME_SECRET")).toBe(false);
    expect(output.join("\n")).not.toContain("hunter2-secret-value");
    expect(output.join("\n")).not.toContain("db.internal");
    expect(env.get("TASK_ID")).toBe("4242");
    expect(env.get("TASK_ATTEMPT")).toBe("2");
    expect(env.get("GREETING")).toBe("hello world");
    expect(env.get("EMPTY")).toBe("");
    expect(env.get("PATH")).toBeDefined();
  });

  it("runs the command in the given working directory", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "shell-cwd-"));
    try {
      const ctx = pluginContext();
      await run({ command: "pwd -P", cwd: dir }, ctx);
      expect(ctx.linesOf("stdout")).toEqual([await realpath(dir)]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("on abort kills the whole process group and rejects with the abort reason", async () => {
    const ctx = pluginContext();
    const marker = uniqueSleep();
    const outcome = run({ command: `sleep ${marker} & sleep ${marker} & wait` }, ctx);
    await running(marker, 2);

    const reason = new Error("x");
    ctx.controller.abort(reason);

    const settled = await settleWithin(outcome, 10_000);
    expect(settled).toEqual({ state: "rejected", reason });
    await expectAllGone(marker);
  });

  it("sends SIGTERM first, so a command can clean up before it goes", async () => {
    const ctx = pluginContext();
    const outcome = run({ command: "trap 'echo cleaning up; exit 0' TERM; echo ready; sleep 600 & wait" }, ctx);
    await eventually(() => ctx.linesOf("stdout").includes("ready"), "the command to start");

    ctx.controller.abort(new Error("cancelled"));

    await expect(outcome).rejects.toThrow("cancelled");
    expect(ctx.linesOf("stdout")).toEqual(["ready", "cleaning up"]);
  });

  it("SIGKILLs a command that ignores SIGTERM once the grace period is over", async () => {
    const ctx = pluginContext();
    const marker = uniqueSleep();
    const outcome = run({ command: `trap '' TERM; sleep ${marker} & wait` }, ctx);
    await running(marker, 1);

    const reason = new Error("timed out");
    ctx.controller.abort(reason);
    // SIGTERM is ignored, so only the SIGKILL after killGraceMs (500 ms) can end it.
    const settled = await settleWithin(outcome, 10_000);

    expect(settled).toEqual({ state: "rejected", reason });
    await expectAllGone(marker);
  });

  it("kills what the command left running in the background when it exits", async () => {
    const ctx = pluginContext();
    // The background sleep does not hold the output pipes, so nothing but the group kill stops it.
    const marker = uniqueSleep();
    const result = await run({ command: `sleep ${marker} >/dev/null 2>&1 & echo started` }, ctx);

    expect(result).toEqual({ exit_code: 0, stdout_lines: 1, stderr_lines: 0 });
    await expectAllGone(marker);
  });

  it("kills what the command started in a session of its own (setsid), with its timeout and when it exits", async () => {
    const ctx = pluginContext();
    const marker = uniqueSleep();
    // The issue-10 escape: a new session leaves the process group, so only a PID namespace catches it.
    const result = await run({ command: `(setsid sleep ${marker} >/dev/null 2>&1 &); echo started` }, ctx);
    expect(result).toMatchObject({ exit_code: 0 });
    await expectAllGone(marker);

    const aborted = pluginContext();
    const second = uniqueSleep();
    const outcome = run({ command: `(setsid sleep ${second} >/dev/null 2>&1 &); sleep ${uniqueSleep()}` }, aborted);
    await running(second, 1);
    aborted.controller.abort(new Error("timed out"));
    await expect(outcome).rejects.toThrow("timed out");
    await expectAllGone(second);
  });

  it("runs the command as an unprivileged user that cannot read the worker's environment or secret files", async () => {
    const ctx = pluginContext();
    const secretFile = path.join(await mkdtemp(path.join(os.tmpdir(), "shell-secret-")), "embedded-postgres.json");
    await writeFile(secretFile, "superuser-password", { mode: 0o600 });
    vi.stubEnv("SOME_SECRET", "hunter2-secret-value");
    await run(
      {
        command: `id -u; cat /proc/${process.pid}/environ 2>&1 | tr '\\0' '\\n'; tr '\\0' '\\n' < /proc/$PPID/environ 2>&1; cat ${secretFile} 2>&1; true`,
      },
      ctx,
    );
    const output = ctx.linesOf("stdout").join("\n");
    expect(output).not.toContain("hunter2-secret-value");
    expect(output).not.toContain("superuser-password");
    // As root (the tests' and the Helm shell workers' case) commands run as nobody.
    if (process.getuid?.() === 0) expect(ctx.linesOf("stdout")[0]).toBe("65534");
    await rm(path.dirname(secretFile), { recursive: true, force: true });
  });

  it.runIf(process.getuid?.() === 0)("contains commands without root too: a user namespace brings the PID namespace", async () => {
    const marker = uniqueSleep();
    const helper = fileURLToPath(new URL("../helpers/run-shell-task.ts", import.meta.url));
    // The service as an unprivileged user (nobody), running one attempt that tries to escape with setsid.
    const out = execFileSync(
      "setpriv",
      ["--reuid=65534", "--regid=65534", "--clear-groups", "--", process.execPath, "--import", "tsx", helper, `(setsid sleep ${marker} >/dev/null 2>&1 &); id -u`],
      { env: { PATH: process.env.PATH, HOME: os.tmpdir() }, encoding: "utf8" },
    );
    const report = JSON.parse(out.trim().split("\n").at(-1)!);
    expect(report.containment).toMatchObject({ mode: "pid-namespace", userNamespace: true });
    expect(report.lines).toEqual(["65534"]);
    await expectAllGone(marker);
  });

  it("stops the command when the lease renewals stop (the watchdog), and keeps it running while they come", async () => {
    const listeners = new Set<() => void>();
    const ctx = { ...pluginContext(), lease: { watchdogMs: 600, onRenew: (l: () => void) => (listeners.add(l), () => listeners.delete(l)) } };
    const marker = uniqueSleep();
    const outcome = run({ command: `(setsid sleep ${marker} >/dev/null 2>&1 &); sleep ${uniqueSleep()}` }, ctx);
    await running(marker, 1);
    // Renewed for 1.5 s: still running.
    for (let i = 0; i < 10; i++) {
      listeners.forEach((l) => l());
      await new Promise((r) => setTimeout(r, 150));
    }
    expect(processesMatching(marker)).toHaveLength(1);
    // No more renewals: the supervisor kills everything on its own, with no abort from the worker.
    await expect(outcome).rejects.toThrow(/stopped by its watchdog/);
    await expectAllGone(marker);
  });

  it("does not start the command when the signal is already aborted", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "shell-aborted-"));
    try {
      const ctx = pluginContext();
      const reason = new Error("shutting down");
      ctx.controller.abort(reason);
      await expect(run({ command: "touch started", cwd: dir }, ctx)).rejects.toBe(reason);
      await expect(realpath(path.join(dir, "started"))).rejects.toThrow(/ENOENT/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("rejects a working directory that does not exist", async () => {
    const ctx = pluginContext();
    await expect(run({ command: "true", cwd: "/nonexistent/dir/for/shell/test" }, ctx)).rejects.toThrow(/ENOENT/);
  });
});

describe("shell parameters", () => {
  const issues = (raw: unknown) => {
    const parsed = shell.parameters.safeParse(raw);
    expect(parsed.success).toBe(false);
    return parsed.error!.issues.map((i) => ({ path: i.path.join("."), message: i.message, code: i.code }));
  };

  it("requires a command", () => {
    expect(issues({})).toEqual([expect.objectContaining({ path: "command" })]);
    expect(issues({ command: "" })).toEqual([expect.objectContaining({ path: "command", code: "too_small" })]);
  });

  it("rejects unknown keys", () => {
    expect(issues({ command: "true", shell: "/bin/zsh" })).toEqual([expect.objectContaining({ code: "unrecognized_keys" })]);
  });

  it("rejects an environment variable with an invalid name", () => {
    const found = issues({ command: "true", env: { "1BAD": "x" } });
    expect(found).toEqual([expect.objectContaining({ path: "env.1BAD", code: "invalid_key" })]);
    expect(issues({ command: "true", env: { "A-B": "x" } })).toHaveLength(1);
  });

  it("accepts a command with env and cwd", () => {
    const params = shell.parameters.parse({ command: "ls", env: { A_1: "x" }, cwd: "/tmp" });
    expect(params).toEqual({ command: "ls", env: { A_1: "x" }, cwd: "/tmp" });
  });
});

describe("shell enablement", () => {
  it("is disabled, with a hint, unless enabled", () => {
    expect(shellPlugin({ enabled: false, killGraceMs: 500 }).disabledReason).toMatch(/enable-shell/);
    expect(shell.disabledReason).toBeUndefined();
  });
});
