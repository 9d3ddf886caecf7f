import { spawn, spawnSync } from "node:child_process";
import { InvalidArgumentError, ServerBusyError } from "../errors.js";
import type { Logger } from "../logger.js";

/** How serious a shellcheck finding is (its own four levels). */
export type ShellFindingLevel = "error" | "warning" | "info" | "style";

/** One shellcheck finding in a shell task's command. */
export interface ShellFinding {
  /** The request field that holds the command ("parameters.command", "tasks[2].parameters.command"). */
  field: string;
  line: number;
  column: number;
  level: ShellFindingLevel;
  /** "SC2086". */
  code: string;
  message: string;
}

/** Bounds of the create-time check (config: TASK_SHELL_CHECK_*). */
export interface ShellCheckOptions {
  /** Each child (bash -n, shellcheck) is SIGKILLed after this long. */
  timeoutMs: number;
  /** Checks running at once, over all requests of this process. */
  concurrency: number;
  /** How long a check waits for a free slot before the create fails with ResourceExhausted. */
  waitMs: number;
  /** Longest command checked, in bytes (the shell type's own limit is 65,536 characters). */
  maxBytes: number;
  /** Run shellcheck when it is installed (true), or never (false). */
  shellcheck: boolean;
}

/** The defaults (see config.ts for each). */
export const DEFAULT_SHELL_CHECK: ShellCheckOptions = { timeoutMs: 2_000, concurrency: 4, waitMs: 1_000, maxBytes: 256 * 1024, shellcheck: true };

/** What is kept of a child's output: enough for the first error line, or shellcheck's JSON of a 64 KiB command. */
const MAX_CHILD_OUTPUT = 4 * 1024 * 1024;

interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

/**
 * Runs one child with an EMPTY environment (no secret of the service can reach it, and nothing
 * like BASH_ENV can make `bash -n` run code), the command on stdin or argv, killed at the deadline.
 */
function runChild(command: string, args: string[], input: string | undefined, timeoutMs: number): Promise<ChildResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { env: {}, stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    const out = { stdout: "", stderr: "" };
    for (const stream of ["stdout", "stderr"] as const) {
      child[stream]!.setEncoding("utf8");
      child[stream]!.on("data", (chunk: string) => {
        if (out[stream].length < MAX_CHILD_OUTPUT) out[stream] += chunk;
      });
    }
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, timedOut, stdout: "", stderr: err.message });
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut, ...out });
    });
    if (input !== undefined) {
      child.stdin!.on("error", () => {}); // EPIPE when the child exits (or is killed) before reading it all
      child.stdin!.end(input);
    }
  });
}

/** A counting semaphore whose waiters give up after a while. */
class Slots {
  private used = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(private readonly size: number) {}

  /** Resolves with a release function, or false when no slot freed within `waitMs`. */
  acquire(waitMs: number): Promise<(() => void) | false> {
    const release = () => {
      const next = this.waiting.shift();
      if (next) next();
      else this.used--;
    };
    if (this.used < this.size) {
      this.used++;
      return Promise.resolve(release);
    }
    if (waitMs <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const take = () => {
        clearTimeout(timer);
        resolve(release);
      };
      const timer = setTimeout(() => {
        const i = this.waiting.indexOf(take);
        if (i >= 0) this.waiting.splice(i, 1);
        resolve(false);
      }, waitMs);
      this.waiting.push(take);
    });
  }
}

const LEVELS = new Set<string>(["error", "warning", "info", "style"]);

/** "bash: -c: line 3: syntax error near unexpected token `fi'" -> line 3 and what bash said. */
function syntaxError(stderr: string): string {
  const lines = stderr.split("\n").map((l) => l.replace(/^bash: -c: /, "").trim()).filter((l) => l !== "");
  // bash says where it noticed first ("line 1: unexpected EOF while looking for matching `"'"), then
  // often a generic "syntax error: unexpected end of file" at the last line.
  return lines.find((l) => /^line \d+:/.test(l)) ?? lines[0] ?? "bash -n refused it";
}

/**
 * The create-time check of shell commands (issue 29 part 3): `bash -n` parses the command without
 * running it, and shellcheck (when installed) reports what looks wrong. Bounded so that creates
 * cannot be used to load the server: a size cap, a timeout per child, and a fixed number of checks
 * at once; a create that finds every slot busy waits `waitMs` for one, then fails with
 * ResourceExhausted (a client retries it like any overload).
 */
export class ShellChecker {
  private readonly slots: Slots;
  private shellcheckPath: string | false | undefined;

  constructor(
    private readonly options: ShellCheckOptions,
    private readonly logger?: Logger,
  ) {
    this.slots = new Slots(options.concurrency);
  }

  /** Whether shellcheck runs here (installed, and not turned off); probed once. */
  hasShellcheck(): boolean {
    if (!this.options.shellcheck) return false;
    if (this.shellcheckPath === undefined) {
      const probe = spawnSync("shellcheck", ["--version"], { env: {}, stdio: "ignore", timeout: 5_000 });
      this.shellcheckPath = probe.status === 0 ? "shellcheck" : false;
    }
    return this.shellcheckPath !== false;
  }

  /**
   * Checks `command` (held by the request field `field`): throws InvalidArgumentError naming the
   * line of a syntax error (or, with `strict`, shellcheck's error-level findings), ServerBusyError
   * when the checks are all busy; otherwise resolves with shellcheck's findings (none without it).
   */
  async check(command: string, field: string, strict = false): Promise<ShellFinding[]> {
    if (Buffer.byteLength(command) > this.options.maxBytes) {
      throw InvalidArgumentError.of(field, `is too long to check (at most ${this.options.maxBytes} bytes)`);
    }
    const release = await this.slots.acquire(this.options.waitMs);
    if (!release) throw new ServerBusyError(`too many shell commands being checked at once (at most ${this.options.concurrency}); retry shortly`);
    try {
      await this.parse(command, field);
      const findings = this.hasShellcheck() ? await this.lint(command, field) : [];
      const errors = findings.filter((f) => f.level === "error");
      if (strict && errors.length > 0) {
        throw new InvalidArgumentError(errors.map((f) => ({ field, reason: `line ${f.line}: ${f.message} (shellcheck ${f.code}; refused by strict_shell_check)` })));
      }
      return findings;
    } finally {
      release();
    }
  }

  /** bash -n: a syntax error is InvalidArgument with its line. */
  private async parse(command: string, field: string): Promise<void> {
    const r = await runChild("bash", ["-n", "-c", command], undefined, this.options.timeoutMs);
    if (r.timedOut) throw InvalidArgumentError.of(field, `could not be parsed within ${this.options.timeoutMs} ms (bash -n): simplify it, or run a script file`);
    if (r.code === 0) return;
    if (r.code === null && r.signal === null) {
      // bash could not be started: not the command's fault, and not a reason to refuse it.
      this.logger?.warn({ err: r.stderr }, "bash -n could not run: shell command not checked");
      return;
    }
    if (r.signal !== null || (r.code !== null && r.code > 128)) {
      throw InvalidArgumentError.of(field, `could not be parsed: bash -n crashed on it (${r.signal ?? `exit ${r.code}`}), e.g. nesting too deep`);
    }
    throw InvalidArgumentError.of(field, `has a syntax error at ${syntaxError(r.stderr)}`);
  }

  /** shellcheck's findings; none when it fails or times out (it never blocks a command that bash accepts). */
  private async lint(command: string, field: string): Promise<ShellFinding[]> {
    const r = await runChild("shellcheck", ["--shell=bash", "--format=json1", "-"], command, this.options.timeoutMs);
    // 0: nothing found, 1: findings; anything else is shellcheck failing.
    if (r.timedOut || (r.code !== 0 && r.code !== 1)) {
      this.logger?.warn({ timedOut: r.timedOut, code: r.code, err: r.stderr.slice(0, 500) }, "shellcheck did not finish: no warnings for this command");
      return [];
    }
    try {
      const parsed = JSON.parse(r.stdout) as { comments?: Array<{ line: number; column: number; level: string; code: number; message: string }> };
      return (parsed.comments ?? []).map((c) => ({
        field,
        line: c.line,
        column: c.column,
        level: (LEVELS.has(c.level) ? c.level : "info") as ShellFindingLevel,
        code: `SC${c.code}`,
        message: c.message,
      }));
    } catch {
      return [];
    }
  }
}
