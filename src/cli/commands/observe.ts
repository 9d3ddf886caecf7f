import { toJson } from "@bufbuild/protobuf";
import { Command, Option } from "commander";
import { createRequire } from "node:module";
import { TaskLogLineSchema, TaskStatus, WatchTaskResponseSchema, type TaskLogLine, type TaskProgress } from "../../gen/task/v1/task_pb.js";
import { taskClient } from "../client.js";
import type { CliIO } from "../io.js";
import { isoTime, progressText, statusName } from "../output.js";
import { parseInteger, parseTaskId } from "../parse.js";
import { UsageError } from "../io.js";
import type { GlobalOptions } from "../program.js";

/** The task ended other than SUCCEEDED; what it printed is already on stdout. */
export class TaskDidNotSucceed extends Error {
  override name = "TaskDidNotSucceed";
}

/** stdout lines as printed; stderr and system lines marked, so they stand out. */
function formatLine(line: TaskLogLine): string {
  if (line.stream === "stdout") return line.line;
  return `${line.stream}: ${line.line}`;
}

function printLine(io: CliIO, output: GlobalOptions["output"], line: TaskLogLine): void {
  io.stdout.write(output === "table" ? `${formatLine(line)}\n` : `${JSON.stringify(toJson(TaskLogLineSchema, line))}\n`);
}

/**
 * Follows a task until it is terminal, printing what `show` selects, and fails unless it
 * SUCCEEDED (so `task-cli watch --id 7 && next-step` works in scripts).
 */
async function follow(
  io: CliIO,
  g: GlobalOptions,
  id: bigint,
  show: { history: boolean; logs: boolean; afterSeq?: number; attempt?: number; stream?: string },
): Promise<void> {
  let final = TaskStatus.UNSPECIFIED;
  let lastError = "";
  // Lines already printed (a --tail or range before following) and filters are skipped here.
  const wanted = (line: TaskLogLine) =>
    line.seq > (show.afterSeq ?? 0) && (!show.attempt || line.attempt === show.attempt) && (!show.stream || line.stream === show.stream);
  const bar = show.history && g.output === "table" ? progressDisplay(io) : undefined;
  let lastProgress: string | undefined;
  for await (const res of taskClient(g).watchTask({ id, includeLogs: show.logs })) {
    const { event } = res;
    if (event.case === "task") {
      final = event.value.status;
      lastError = event.value.lastError;
      const p = event.value.progress;
      const key = p && `${p.attempt}:${p.fraction}:${p.message}`;
      if (p && bar && key !== lastProgress) bar.show(p);
      lastProgress = key;
    }
    if (event.case !== "task") bar?.pause();
    if (g.output !== "table") {
      if (event.case === "log" ? show.logs && wanted(event.value) : show.history) {
        io.stdout.write(`${JSON.stringify(toJson(WatchTaskResponseSchema, res))}\n`);
      }
      continue;
    }
    if (event.case === "history" && show.history) {
      const h = event.value;
      io.stdout.write(`${isoTime(h.createdAt)}  ${statusName(h.status).padEnd(9)}  ${h.details}\n`);
    } else if (event.case === "log" && show.logs && wanted(event.value)) {
      io.stdout.write(`${formatLine(event.value)}\n`);
    }
  }
  bar?.pause();
  if (final !== TaskStatus.SUCCEEDED) {
    throw new TaskDidNotSucceed(`task ${id} is ${statusName(final)}${lastError ? `: ${lastError}` : ""}`);
  }
}

/**
 * How `watch` shows progress: a bar (cli-progress, on stderr) on a terminal, stopped while other
 * lines print; otherwise one plain line per change on stdout.
 */
function progressDisplay(io: CliIO): { show(p: TaskProgress): void; pause(): void } {
  if (!io.isTTY) {
    return { show: (p) => void io.stdout.write(`${isoTime(p.updatedAt)}  ${"PROGRESS".padEnd(9)}  ${progressText(p)}\n`), pause: () => undefined };
  }
  // Loaded here, not at start-up: only an interactive watch draws a bar.
  const cliProgress = createRequire(import.meta.url)("cli-progress") as typeof import("cli-progress");
  let bar: InstanceType<typeof cliProgress.SingleBar> | undefined;
  // The injected stderr, as the terminal stream cli-progress draws on (it needs only these).
  const terminal = { isTTY: true, columns: io.columns, write: (text: string) => (io.stderr.write(text), true) };
  return {
    show(p) {
      const payload = { text: progressText(p) };
      if (!bar) {
        bar = new cliProgress.SingleBar({ format: "{bar} {text}", stream: terminal as unknown as NodeJS.WriteStream, hideCursor: true }, cliProgress.Presets.shades_classic);
        bar.start(1000, Math.round(p.fraction * 1000), payload);
      } else bar.update(Math.round(p.fraction * 1000), payload);
    },
    pause() {
      bar?.stop();
      bar = undefined;
    },
  };
}

/** Registers `logs` and `watch`, at the top level and under `task`. */
export function registerObserveCommands(parents: Command[], io: CliIO): void {
  for (const parent of parents) {
    parent
      .command("logs")
      .description(
        "Print what a task wrote (stdout as is, stderr and system lines marked): all of it, --from/--to a line range, or --tail the last lines; --follow streams until it finishes",
      )
      .addOption(new Option("--id <id>", "task id").makeOptionMandatory())
      .option("--from <line>", "first line number to print (1-based, across attempts)")
      .option("--to <line>", "last line number to print")
      .option("--tail <n>", "print the last n lines (1-5000)")
      .option("--attempt <n>", "only lines of this attempt")
      .addOption(new Option("--stream <stream>", "only lines of this stream").choices(["stdout", "stderr", "system"]))
      .option("-f, --follow", "keep streaming new lines until the task finishes (across retries); exit 1 unless it SUCCEEDED")
      .action(
        async (flags: { id: string; from?: string; to?: string; tail?: string; attempt?: string; stream?: string; follow?: boolean }, cmd: Command) => {
          const g = cmd.optsWithGlobals<GlobalOptions>();
          const id = parseTaskId(flags.id);
          const from = flags.from === undefined ? undefined : parseInteger(flags.from, "--from", 1, 2_147_483_647);
          const to = flags.to === undefined ? undefined : parseInteger(flags.to, "--to", 1, 2_147_483_647);
          if (from !== undefined && to !== undefined && from > to) throw new UsageError(`--to (${to}) must not be before --from (${from})`);
          const tail = flags.tail === undefined ? undefined : parseInteger(flags.tail, "--tail", 1, 5000);
          if (tail !== undefined && (from !== undefined || to !== undefined)) throw new UsageError("--tail cannot be combined with --from/--to");
          const attempt = flags.attempt === undefined ? 0 : parseInteger(flags.attempt, "--attempt", 1, 1_000_000);
          const stream = flags.stream ?? "";
          const client = taskClient(g);
          let afterSeq = 0;
          if (tail !== undefined) {
            const page = await client.getTaskLogs({ id, tail, attempt, stream });
            if (page.lines.length === 0 && g.output === "table" && !flags.follow) io.stderr.write(`task ${id} has no output (yet)\n`);
            for (const line of page.lines) printLine(io, g.output, line);
            afterSeq = page.totalLines;
          } else if (from !== undefined || to !== undefined || !flags.follow) {
            for (let next = from ?? 1; ; ) {
              const page = await client.getTaskLogs({ id, from: next, to, attempt, stream, limit: 5000 });
              if (next === (from ?? 1) && page.lines.length === 0 && g.output === "table") {
                const ranged = from !== undefined || to !== undefined;
                io.stderr.write(ranged ? `task ${id} has no output in that range (${page.totalLines} lines in all)\n` : `task ${id} has no output (yet)\n`);
              }
              for (const line of page.lines) printLine(io, g.output, line);
              afterSeq = page.lines.at(-1)?.seq ?? afterSeq;
              if (!page.more) break;
              next = page.lastSeq + 1;
            }
          }
          if (flags.follow) return follow(io, g, id, { history: false, logs: true, afterSeq, attempt, stream });
        },
      );

    parent
      .command("watch")
      .description("Stream a task's state changes (and --logs its output) until it finishes; exit 1 unless it SUCCEEDED")
      .addOption(new Option("--id <id>", "task id").makeOptionMandatory())
      .option("--logs", "also print its output lines")
      .action(async (flags: { id: string; logs?: boolean }, cmd: Command) => {
        const g = cmd.optsWithGlobals<GlobalOptions>();
        await follow(io, g, parseTaskId(flags.id), { history: true, logs: Boolean(flags.logs) });
      });
  }
}
