import { spawn } from "node:child_process";
import os from "node:os";
import { readLines } from "./line-reader.js";
import { shellParameters } from "./schemas.js";
import type { Plugin } from "./types.js";

/** Options of the shell plugin. */
export interface ShellOptions {
  enabled: boolean;
  /** After SIGTERM to the process group, wait this long before SIGKILL. */
  killGraceMs: number;
}

/** The only environment a command sees besides its own `env`: nothing of the service's secrets. */
function cleanEnv(taskId: string, attempt: number, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    HOME: os.homedir(),
    LANG: "C.UTF-8",
    ...extra,
    // Last, so a task's own env cannot disguise which task and attempt it is.
    TASK_ID: taskId,
    TASK_ATTEMPT: String(attempt),
  };
}

function signalGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false; // the group is already gone
  }
}

/**
 * Runs `bash -c command` as the leader of a new process group, streaming stdout/stderr lines to the
 * task's output. Abort (timeout, cancel, shutdown) sends SIGTERM to the whole group, then SIGKILL
 * after the grace period. When the command exits, anything it left running in its group is killed
 * too, so a task never leaks processes. A non-zero exit is a failure.
 */
export function shellPlugin(options: ShellOptions): Plugin<typeof shellParameters> {
  return {
    name: "shell",
    description: "Runs a command with bash -c in its own process group, capturing its output.",
    parameters: shellParameters,
    defaults: { timeoutMs: 300_000, maxAttempts: 3 },
    disabledReason: options.enabled ? undefined : "start the service with --enable-shell (or TASK_ENABLE_SHELL=true) to allow it",
    run(params, ctx) {
      return new Promise((resolve, reject) => {
        ctx.signal.throwIfAborted();
        const child = spawn("bash", ["-c", params.command], {
          cwd: params.cwd,
          env: cleanEnv(ctx.taskId, ctx.attempt, params.env),
          detached: true, // new process group, so the whole tree can be signalled
          stdio: ["ignore", "pipe", "pipe"],
        });
        const pid = child.pid;
        const lines = { stdout: 0, stderr: 0 };
        let lastStderr = "";
        let killTimer: NodeJS.Timeout | undefined;
        const onAbort = () => {
          if (pid === undefined) return;
          ctx.logger.info({ pid }, "terminating shell process group");
          signalGroup(pid, "SIGTERM");
          killTimer = setTimeout(() => signalGroup(pid, "SIGKILL"), options.killGraceMs);
        };
        ctx.signal.addEventListener("abort", onAbort, { once: true });
        for (const stream of ["stdout", "stderr"] as const) {
          readLines(child[stream], (line) => {
            lines[stream]++;
            if (stream === "stderr") lastStderr = line;
            ctx.output.write(stream, line);
          });
        }
        // The leader exited: stop whatever it left behind in its group.
        child.once("exit", () => {
          if (pid !== undefined) signalGroup(pid, "SIGKILL");
        });
        child.once("error", (err) => {
          ctx.signal.removeEventListener("abort", onAbort);
          clearTimeout(killTimer);
          reject(err);
        });
        child.once("close", (code, signal) => {
          ctx.signal.removeEventListener("abort", onAbort);
          clearTimeout(killTimer);
          if (ctx.signal.aborted) return reject(ctx.signal.reason);
          const summary = { exit_code: code, stdout_lines: lines.stdout, stderr_lines: lines.stderr };
          if (code === 0) return resolve(summary);
          const why = signal ? `killed by ${signal}` : `exit code ${code}`;
          reject(new Error(lastStderr ? `${why}: ${lastStderr.slice(0, 500)}` : why));
        });
      });
    },
  };
}
