import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { createLogger } from "../../src/logger.js";
import type { LogSink, PluginContext } from "../../src/plugins/types.js";

type Stream = Parameters<LogSink["write"]>[0];

/** One line a plugin wrote to its output. */
export interface CapturedLine {
  stream: Stream;
  line: string;
}

/** A plugin context whose output is captured in memory and whose signal the test controls. */
export interface TestPluginContext extends PluginContext {
  controller: AbortController;
  /** Every line written, in order across streams. */
  lines: CapturedLine[];
  /** The lines of one stream, in order. */
  linesOf(stream: Stream): string[];
}

let nextTaskId = 1_000;

/** A fresh context for one attempt (a unique task id, attempt 1 unless given). */
export function pluginContext(overrides: { taskId?: string; attempt?: number } = {}): TestPluginContext {
  const controller = new AbortController();
  const lines: CapturedLine[] = [];
  nextTaskId += 1;
  return {
    controller,
    signal: controller.signal,
    taskId: overrides.taskId ?? String(nextTaskId),
    attempt: overrides.attempt ?? 1,
    logger: createLogger("silent"),
    output: { write: (stream, line) => void lines.push({ stream, line }) },
    lines,
    linesOf: (stream) => lines.filter((l) => l.stream === stream).map((l) => l.line),
  };
}

/** Polls `check` until it returns a truthy value, or fails after `timeoutMs`. */
export async function eventually<T>(check: () => T | Promise<T>, what: string, timeoutMs = 10_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * How a promise settled within `timeoutMs`, or "pending" if it did not: for asserting that
 * something ends promptly without measuring how long it took.
 */
export async function settleWithin<T>(
  promise: Promise<T>,
  timeoutMs: number,
): Promise<{ state: "fulfilled"; value: T } | { state: "rejected"; reason: unknown } | { state: "pending" }> {
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<{ state: "pending" }>((resolve) => {
    timer = setTimeout(() => resolve({ state: "pending" }), timeoutMs);
  });
  try {
    return await Promise.race([
      promise.then(
        (value) => ({ state: "fulfilled" as const, value }),
        (reason: unknown) => ({ state: "rejected" as const, reason }),
      ),
      pending,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Whether a process is still running. A zombie counts as gone: it has exited, and whether it is
 * reaped depends on this machine's PID 1, not on the code under test.
 */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw err;
  }
  try {
    // Field 3 of /proc/<pid>/stat is the state; the command name before it is parenthesised.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}
