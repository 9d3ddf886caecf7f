import { toJson } from "@bufbuild/protobuf";
import { Command, Option } from "commander";
import { TaskLogLineSchema, TaskStatus, WatchTaskResponseSchema, type TaskLogLine } from "../../gen/task/v1/task_pb.js";
import { taskClient } from "../client.js";
import type { CliIO } from "../io.js";
import { isoTime, statusName } from "../output.js";
import { parseTaskId } from "../parse.js";
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
async function follow(io: CliIO, g: GlobalOptions, id: bigint, show: { history: boolean; logs: boolean }): Promise<void> {
  let final = TaskStatus.UNSPECIFIED;
  let lastError = "";
  for await (const res of taskClient(g).watchTask({ id, includeLogs: show.logs })) {
    const { event } = res;
    if (event.case === "task") {
      final = event.value.status;
      lastError = event.value.lastError;
    }
    if (g.output !== "table") {
      if (event.case === "log" ? show.logs : show.history) {
        io.stdout.write(`${JSON.stringify(toJson(WatchTaskResponseSchema, res))}\n`);
      }
      continue;
    }
    if (event.case === "history" && show.history) {
      const h = event.value;
      io.stdout.write(`${isoTime(h.createdAt)}  ${statusName(h.status).padEnd(9)}  ${h.details}\n`);
    } else if (event.case === "log" && show.logs) {
      io.stdout.write(`${formatLine(event.value)}\n`);
    }
  }
  if (final !== TaskStatus.SUCCEEDED) {
    throw new TaskDidNotSucceed(`task ${id} is ${statusName(final)}${lastError ? `: ${lastError}` : ""}`);
  }
}

/** Registers `logs` and `watch`, at the top level and under `task`. */
export function registerObserveCommands(parents: Command[], io: CliIO): void {
  for (const parent of parents) {
    parent
      .command("logs")
      .description("Print what a task wrote (stdout as is, stderr and system lines marked); --follow streams until it finishes")
      .addOption(new Option("--id <id>", "task id").makeOptionMandatory())
      .option("-f, --follow", "keep streaming new lines until the task finishes; exit 1 unless it SUCCEEDED")
      .action(async (flags: { id: string; follow?: boolean }, cmd: Command) => {
        const g = cmd.optsWithGlobals<GlobalOptions>();
        const id = parseTaskId(flags.id);
        if (flags.follow) return follow(io, g, id, { history: false, logs: true });
        const client = taskClient(g);
        for (let afterSeq = 0; ; ) {
          const page = await client.getTaskLogs({ id, afterSeq, limit: 5000 });
          // Silence would look like a failure; stderr keeps stdout empty for scripts.
          if (afterSeq === 0 && page.lines.length === 0 && g.output === "table") io.stderr.write(`task ${id} has no output (yet)\n`);
          for (const line of page.lines) printLine(io, g.output, line);
          if (!page.more) return;
          afterSeq = page.lastSeq;
        }
      });

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
