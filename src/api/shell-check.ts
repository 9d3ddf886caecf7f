import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { InvalidArgumentError, ServerBusyError, type FieldViolation } from "../errors.js";
import type { Config } from "../config.js";
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

/** Bounds of the create-time check (config.ts: shellCheckTimeoutMs and the settings after it). */
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

/** A checked command: why it is refused, or shellcheck's findings (without the field). */
interface Verdict {
  refused?: string;
  findings: Omit<ShellFinding, "field">[];
}

/** Verdicts kept, so a batch or a repeated create of the same command runs no process. */
const RECENT_VERDICTS = 500;

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
  /** Verdicts of recently checked commands, by hash (oldest first). */
  private readonly recent = new Map<string, Verdict>();

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
   * Checks the shell commands of one request (a CreateTasks batch may hold many, often the same):
   * each distinct command once (and a command checked recently not again), at most `concurrency`
   * of them at a time, each in a slot shared with every other request. Throws InvalidArgumentError
   * naming each refused command's field and line (a syntax error; with `strict`, shellcheck's
   * error-level findings), ServerBusyError when no slot freed in time; otherwise resolves with
   * shellcheck's findings (none without it), each naming its field.
   */
  async checkAll(items: Array<{ command: string; field: string; strict: boolean }>): Promise<ShellFinding[]> {
    const distinct = [...new Set(items.map((i) => i.command))];
    const results = new Map<string, Verdict>();
    let next = 0;
    const run = async () => {
      while (next < distinct.length) {
        const command = distinct[next++]!;
        results.set(command, await this.verdict(command));
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.options.concurrency, distinct.length) }, run));
    const violations: FieldViolation[] = [];
    const findings: ShellFinding[] = [];
    for (const { command, field, strict } of items) {
      const v = results.get(command)!;
      if (v.refused !== undefined) {
        violations.push({ field, reason: v.refused });
        continue;
      }
      const errors = v.findings.filter((f) => f.level === "error");
      if (strict && errors.length > 0) {
        for (const f of errors) violations.push({ field, reason: `line ${f.line}: ${f.message} (shellcheck ${f.code}; refused by strict_shell_check)` });
        continue;
      }
      findings.push(...v.findings.map((f) => ({ ...f, field })));
    }
    if (violations.length > 0) throw new InvalidArgumentError(violations);
    return findings;
  }

  /** One command's verdict, from the recent ones or checked now in a shared slot. */
  private async verdict(command: string): Promise<Verdict> {
    if (Buffer.byteLength(command) > this.options.maxBytes) return { refused: `is too long to check (at most ${this.options.maxBytes} bytes)`, findings: [] };
    const key = createHash("sha256").update(command).digest("base64");
    const known = this.recent.get(key);
    if (known) {
      // Most recently used last, so the oldest is the first to go.
      this.recent.delete(key);
      this.recent.set(key, known);
      return known;
    }
    const release = await this.slots.acquire(this.options.waitMs);
    if (!release) throw new ServerBusyError(`too many shell commands being checked at once (at most ${this.options.concurrency}); retry shortly`);
    let verdict: Verdict;
    let transient: boolean;
    try {
      const parsed = await this.parse(command);
      transient = parsed.transient;
      verdict = { refused: parsed.refused, findings: parsed.refused === undefined && this.hasShellcheck() ? await this.lint(command) : [] };
    } finally {
      release();
    }
    // A timeout may be the machine's load rather than the command (or bash could not start): checked afresh next time.
    if (transient) return verdict;
    this.recent.set(key, verdict);
    if (this.recent.size > RECENT_VERDICTS) this.recent.delete(this.recent.keys().next().value!);
    return verdict;
  }

  /** bash -n: why the command is refused (a syntax error, with its line), or undefined. */
  private async parse(command: string): Promise<{ refused?: string; transient: boolean }> {
    const r = await runChild("bash", ["-n", "-c", command], undefined, this.options.timeoutMs);
    if (r.timedOut) return { refused: `could not be parsed within ${this.options.timeoutMs} ms (bash -n): simplify it, or run a script file`, transient: true };
    if (r.code === 0) return { transient: false };
    if (r.code === null && r.signal === null) {
      // bash could not be started: not the command's fault, and not a reason to refuse it.
      this.logger?.warn({ err: r.stderr }, "bash -n could not run: shell command not checked");
      return { transient: true };
    }
    if (r.signal !== null || (r.code !== null && r.code > 128)) {
      return { refused: `could not be parsed: bash -n crashed on it (${r.signal ?? `exit ${r.code}`}), e.g. nesting too deep`, transient: false };
    }
    return { refused: `has a syntax error at ${syntaxError(r.stderr)}`, transient: false };
  }

  /** shellcheck's findings; none when it fails or times out (it never blocks a command that bash accepts). */
  private async lint(command: string): Promise<Omit<ShellFinding, "field">[]> {
    const r = await runChild("shellcheck", ["--shell=bash", "--format=json1", "-"], command, this.options.timeoutMs);
    // 0: nothing found, 1: findings; anything else is shellcheck failing.
    if (r.timedOut || (r.code !== 0 && r.code !== 1)) {
      this.logger?.warn({ timedOut: r.timedOut, code: r.code, err: r.stderr.slice(0, 500) }, "shellcheck did not finish: no warnings for this command");
      return [];
    }
    try {
      const parsed = JSON.parse(r.stdout) as { comments?: Array<{ line: number; column: number; level: string; code: number; message: string }> };
      return (parsed.comments ?? []).map((c) => ({
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

/** A checker with the configured bounds (the defaults where unset). */
export function shellCheckerFor(config: Partial<Pick<Config, "shellCheckTimeoutMs" | "shellCheckConcurrency" | "shellCheckWaitMs" | "shellcheck">>, logger?: Logger): ShellChecker {
  return new ShellChecker(
    {
      ...DEFAULT_SHELL_CHECK,
      timeoutMs: config.shellCheckTimeoutMs ?? DEFAULT_SHELL_CHECK.timeoutMs,
      concurrency: config.shellCheckConcurrency ?? DEFAULT_SHELL_CHECK.concurrency,
      waitMs: config.shellCheckWaitMs ?? DEFAULT_SHELL_CHECK.waitMs,
      shellcheck: config.shellcheck ?? DEFAULT_SHELL_CHECK.shellcheck,
    },
    logger,
  );
}
