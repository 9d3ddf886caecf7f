import { spawn } from "node:child_process";
import os from "node:os";
import { readLines, type ReadStats } from "./line-reader.js";
import { containedArgv, detectContainment, type Containment } from "./shell-containment.js";
import { shellParameters } from "./schemas.js";
import { ProgressFile } from "./progress-file.js";
import { isCaptureSink, type Plugin } from "./types.js";

/** Options of the shell plugin. */
export interface ShellOptions {
  enabled: boolean;
  /** After SIGTERM to the process group, wait this long before SIGKILL. */
  killGraceMs: number;
  /** The user commands run as (TASK_SHELL_USER); undefined: `nobody` when the service runs as root. */
  user?: string;
}

/** Without a worker's lease (the plugin called directly), the watchdog never fires. */
const NO_WATCHDOG_SECONDS = 365 * 24 * 3600;

/** The only environment a command sees besides its own `env`: nothing of the service's secrets. */
function cleanEnv(taskId: string, attempt: number, home: string, extra: Record<string, string> = {}, traceparent?: string, dirs: Record<string, string> = {}, progressPath = "/dev/null"): Record<string, string> {
  return {
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    HOME: home,
    LANG: "C.UTF-8",
    ...extra,
    // Last, so a task's own env cannot disguise which task and attempt it is.
    TASK_ID: taskId,
    TASK_ATTEMPT: String(attempt),
    // The task's input files, and where the files to keep go (worker/attempt-files.ts).
    ...dirs,
    // Lines `FRACTION [MESSAGE]` written here are the attempt's progress (progress-file.ts).
    TASK_PROGRESS: progressPath,
    // The attempt's trace (W3C Trace Context's variable for processes), so the command's own spans join it.
    ...(traceparent ? { TRACEPARENT: traceparent } : {}),
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

/** "exit code 137" from the supervisor means the command was killed by signal 9. */
function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal) return `killed by ${signal}`;
  if (code !== null && code > 128) {
    const name = Object.entries(os.constants.signals).find(([, n]) => n === code - 128)?.[0];
    if (name) return `killed by ${name}`;
  }
  return `exit code ${code}`;
}

/**
 * Runs `bash -c command` under a per-attempt supervisor (shell-supervisor.sh) as the leader of a new
 * process group, streaming stdout/stderr lines to the task's output. Containment, as the machine
 * allows (shell-containment.ts): a PID namespace of its own, so nothing it starts outlives it; the
 * supervisor dies with its worker (PR_SET_PDEATHSIG) and kills the attempt when the worker's lease
 * renewals stop (a stopped or cut-off worker); the command runs as an unprivileged user when the
 * service runs as root. Abort (timeout, cancel, shutdown) sends SIGTERM to the whole group, then
 * SIGKILL after the grace period. When the command exits, anything it left running is killed too.
 * Pause (PauseTask) SIGSTOPs the group and resume SIGCONTs it. In a worker, the task's input files
 * are in $TASK_INPUT_DIR and the files the command leaves in $TASK_OUTPUT_DIR are kept as outputs.
 * A non-zero exit is a failure.
 */
export function shellPlugin(options: ShellOptions): Plugin<typeof shellParameters> {
  let containment: Containment | undefined;
  return {
    name: "shell",
    description: "Runs a command with bash -c, contained (own process group and PID namespace), capturing its output.",
    parameters: shellParameters,
    defaults: { timeoutMs: 300_000, maxAttempts: 3 },
    pausable: true,
    disabledReason: options.enabled ? undefined : "start the service with --enable-shell (or TASK_ENABLE_SHELL=true) to allow it",
    async run(params, ctx) {
      // Inputs are on disk before the command starts; outputs are stored after it exits 0.
      const dirs = ctx.files ? { TASK_INPUT_DIR: await ctx.files.inputDir(), TASK_OUTPUT_DIR: await ctx.files.outputDir() } : undefined;
      return new Promise((resolve, reject) => {
        ctx.signal.throwIfAborted();
        containment ??= detectContainment(options.user);
        // $TASK_PROGRESS: polled while the command runs, and read a last time before the attempt settles.
        const progressFile = ctx.progress ? ProgressFile.create(ctx.progress, containment.runAs) : undefined;
        const settle = (done: () => void) => void (progressFile ? progressFile.close().then(done) : done());
        const watchdogMs = ctx.lease?.watchdogMs;
        const [command, ...args] = containedArgv(containment, watchdogMs === undefined ? NO_WATCHDOG_SECONDS : watchdogMs / 1000, params.command);
        const child = spawn(command!, args, {
          // Another user may not be allowed into the service's own working directory.
          cwd: params.cwd ?? (containment.runAs ? os.tmpdir() : undefined),
          env: cleanEnv(ctx.taskId, ctx.attempt, containment.runAs ? os.tmpdir() : os.homedir(), params.env, ctx.traceparent, dirs, progressFile?.path),
          detached: true, // new process group, so the whole tree can be signalled
          // stdin is the supervisor's keepalive pipe; the command itself gets /dev/null.
          stdio: ["pipe", "pipe", "pipe"],
        });
        const pid = child.pid;
        // Each renewal of the lease feeds the supervisor's watchdog one byte. Writing after the
        // supervisor exited fails with EPIPE, which is expected.
        child.stdin!.on("error", () => {});
        let lastRenewal = Date.now();
        const stopRenewals = ctx.lease?.onRenew(() => {
          lastRenewal = Date.now();
          if (child.stdin!.writable) child.stdin!.write(".");
        });
        let killTimer: NodeJS.Timeout | undefined;
        // Pause stops the whole group, supervisor included (SIGSTOP cannot be caught); resume
        // continues it. The supervisor's watchdog tells a stop from a silent worker (see
        // shell-supervisor.sh), and the worker keeps renewing the lease while paused.
        const stopPauses = ctx.pause?.onChange((paused) => {
          if (pid === undefined) return;
          ctx.logger.info({ pid, paused }, paused ? "pausing shell process group (SIGSTOP)" : "resuming shell process group (SIGCONT)");
          signalGroup(pid, paused ? "SIGSTOP" : "SIGCONT");
        });
        if (ctx.pause?.paused && pid !== undefined) signalGroup(pid, "SIGSTOP");
        const onAbort = () => {
          if (pid === undefined) return;
          ctx.logger.info({ pid }, "terminating shell process group");
          signalGroup(pid, "SIGTERM");
          // A paused (stopped) group only acts on SIGTERM once continued.
          signalGroup(pid, "SIGCONT");
          killTimer = setTimeout(() => signalGroup(pid, "SIGKILL"), options.killGraceMs);
        };
        ctx.signal.addEventListener("abort", onAbort, { once: true });
        // Backpressure: when storing falls behind, the pipe is paused and the command blocks on
        // its writes. Past the sink's head, chunks go to it raw (only a tail is kept).
        const output = ctx.output;
        const capture = isCaptureSink(output) ? output : undefined;
        const read = { stdout: undefined as ReadStats | undefined, stderr: undefined as ReadStats | undefined };
        for (const stream of ["stdout", "stderr"] as const) {
          read[stream] = readLines(child[stream], {
            line: (line) => output.write(stream, line),
            drain: output.drain ? () => output.drain!() : undefined,
            tailOnly: capture ? () => capture.tailOnly() : undefined,
            raw: capture ? (chunk, newlines) => capture.raw(stream, chunk, newlines) : undefined,
          });
        }
        // The leader exited: stop whatever it left behind in its group.
        child.once("exit", () => {
          if (pid !== undefined) signalGroup(pid, "SIGKILL");
        });
        child.once("error", (err) => {
          stopRenewals?.();
          stopPauses?.();
          ctx.signal.removeEventListener("abort", onAbort);
          clearTimeout(killTimer);
          settle(() => reject(err));
        });
        child.once("close", (code, signal) => settle(() => {
          stopRenewals?.();
          stopPauses?.();
          child.stdin!.destroy();
          ctx.signal.removeEventListener("abort", onAbort);
          clearTimeout(killTimer);
          if (ctx.signal.aborted) return reject(ctx.signal.reason);
          const summary = { exit_code: code, stdout_lines: read.stdout?.lines ?? 0, stderr_lines: read.stderr?.lines ?? 0 };
          const lastStderr = read.stderr?.lastLine() ?? "";
          if (code === 0) return resolve(summary);
          if (watchdogMs !== undefined && Date.now() - lastRenewal >= watchdogMs) {
            return reject(new Error(`stopped by its watchdog: the worker had not renewed the lease for ${Math.round((Date.now() - lastRenewal) / 1000)}s`));
          }
          const why = describeExit(code, signal);
          reject(new Error(lastStderr ? `${why}: ${lastStderr.slice(0, 500)}` : why));
        }));
      });
    },
  };
}
