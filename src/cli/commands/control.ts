import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Command } from "commander";
import {
  BulkAction,
  BulkTasksResponseSchema,
  DeleteTaskResponseSchema,
  PauseTaskResponseSchema,
  ResumeTaskResponseSchema,
  TaskSelectionSchema,
  type BulkTasksResponse,
  type TaskSelection,
} from "../../gen/task/v1/control_pb.js";
import { TaskStatus } from "../../gen/task/v1/task_pb.js";
import { controlClient } from "../client.js";
import type { CliIO } from "../io.js";
import { UsageError } from "../io.js";
import { printMessage } from "../output.js";
import { collect, parseTaskId, parseTime } from "../parse.js";
import type { GlobalOptions } from "../program.js";
import { taskTable } from "../views.js";

/** Flags that select tasks for a bulk action (besides one --id). */
export interface SelectionFlags {
  id?: string[];
  status?: string[];
  type?: string[];
  queue?: string[];
  createdAfter?: string;
  createdBefore?: string;
  name?: string;
  all?: boolean;
  yes?: boolean;
  reason?: string;
}

/** Parses a --status value (case-insensitive, with or without the TASK_STATUS_ prefix). */
export function parseStatus(value: string): TaskStatus {
  const name = value.toUpperCase().replace(/^TASK_STATUS_/, "");
  const status = TaskStatus[name as keyof typeof TaskStatus];
  if (status === undefined || status === TaskStatus.UNSPECIFIED) {
    throw new UsageError(`--status: "${value}" is not one of queued, running, retrying, paused, succeeded, failed, cancelled`);
  }
  return status;
}

/** Adds the selection flags to a command that also takes a single --id. */
export function addSelectionFlags(cmd: Command): Command {
  return cmd
    .option("--id <id>", "task id; repeatable (several ids are one bulk action)", collect)
    .option("--status <status>", "bulk: tasks in this status; repeatable", collect)
    .option("--type <type>", "bulk: tasks of this type; repeatable", collect)
    .option("--queue <queue>", "bulk: tasks in this queue; repeatable", collect)
    .option("--created-after <time>", "bulk: tasks created at or after this ISO-8601 time")
    .option("--created-before <time>", "bulk: tasks created before this ISO-8601 time")
    .option("--name <text>", "bulk: tasks whose name contains this text (case-insensitive)")
    .option("--all", "bulk: every task (the other filters may still narrow it)")
    .option("--yes", "bulk: really do it; without it only the count is printed");
}

/** Whether the flags ask for a bulk action (anything but exactly one --id). */
export function isBulk(flags: SelectionFlags): boolean {
  const filtered = !!(flags.status?.length || flags.type?.length || flags.queue?.length || flags.createdAfter || flags.createdBefore || flags.name || flags.all);
  if ((flags.id?.length ?? 0) > 0 && filtered) throw new UsageError("--id cannot be combined with --status, --type, --queue, --created-*, --name or --all");
  if (!filtered && !flags.id?.length) throw new UsageError("give --id N, or select tasks with --status, --type, --queue, --created-after/--created-before, --name, or --all");
  return filtered || (flags.id?.length ?? 0) > 1;
}

function selectionFrom(flags: SelectionFlags): TaskSelection {
  return create(TaskSelectionSchema, {
    ids: (flags.id ?? []).map(parseTaskId),
    statuses: (flags.status ?? []).map(parseStatus),
    types: flags.type ?? [],
    queues: flags.queue ?? [],
    createdAfter: flags.createdAfter ? timestampFromDate(parseTime(flags.createdAfter, "--created-after")) : undefined,
    createdBefore: flags.createdBefore ? timestampFromDate(parseTime(flags.createdBefore, "--created-before")) : undefined,
    nameContains: flags.name ?? "",
    all: flags.all ?? false,
  });
}

const verbs: Record<BulkAction, string> = {
  [BulkAction.UNSPECIFIED]: "changed",
  [BulkAction.CANCEL]: "cancelled (or asked to stop, if running)",
  [BulkAction.RETRY]: "queued again",
  [BulkAction.PAUSE]: "paused",
  [BulkAction.RESUME]: "resumed",
  [BulkAction.DELETE]: "deleted",
};

function bulkView(action: BulkAction, res: BulkTasksResponse): string {
  if (res.dryRun) {
    if (res.matched === 0n) return "0 tasks match: nothing to do";
    return `${res.matched} task${res.matched === 1n ? "" : "s"} match; ${res.eligible} would be ${verbs[action]}, ${res.matched - res.eligible} not eligible.\nnothing changed: re-run with --yes to do it`;
  }
  return `${res.changed} ${verbs[action]}, ${res.skipped} skipped (not eligible or changed meanwhile) of ${res.matched} matched`;
}

/**
 * Runs a bulk action: without --yes a dry run that prints the count and changes nothing (it never
 * asks: scripts and CI have no terminal); with --yes the real run, repeated while the server
 * reports it stopped at its time budget. Exits 0 either way.
 */
export async function runBulk(io: CliIO, g: GlobalOptions, action: BulkAction, flags: SelectionFlags): Promise<void> {
  const client = controlClient(g);
  const request = { action, selection: selectionFrom(flags), reason: flags.reason ?? "" };
  if (!flags.yes) {
    const res = await client.bulkTasks({ ...request, dryRun: true });
    printMessage(io, g.output, BulkTasksResponseSchema, res, (r) => bulkView(action, r));
    return;
  }
  let total: BulkTasksResponse | undefined;
  for (;;) {
    const res = await client.bulkTasks({ ...request, dryRun: false });
    // The first call's matched is what the selection named; later calls continue the same run.
    if (!total) total = res;
    else {
      total.changed += res.changed;
      total.skipped = total.matched > total.changed ? total.matched - total.changed : 0n;
    }
    if (res.complete) break;
  }
  total.complete = true;
  printMessage(io, g.output, BulkTasksResponseSchema, total, (r) => bulkView(action, r));
}

/** Registers `task pause`, `task resume` and `task delete` (single or bulk). */
export function registerControlCommands(task: Command, io: CliIO): void {
  addSelectionFlags(task.command("pause").description("Pause a task (a waiting one is held; a running shell task is stopped), or many with filters and --yes")).action(
    async (flags: SelectionFlags, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      if (isBulk(flags)) return runBulk(io, g, BulkAction.PAUSE, flags);
      const res = await controlClient(g).pauseTask({ id: parseTaskId(flags.id![0]!) });
      printMessage(io, g.output, PauseTaskResponseSchema, res, (r, width) => taskTable(r.task, width));
    },
  );

  addSelectionFlags(task.command("resume").description("Resume a PAUSED task, or many with filters and --yes")).action(async (flags: SelectionFlags, cmd: Command) => {
    const g = cmd.optsWithGlobals<GlobalOptions>();
    if (isBulk(flags)) return runBulk(io, g, BulkAction.RESUME, flags);
    const res = await controlClient(g).resumeTask({ id: parseTaskId(flags.id![0]!) });
    printMessage(io, g.output, ResumeTaskResponseSchema, res, (r, width) => taskTable(r.task, width));
  });

  addSelectionFlags(
    task.command("delete").alias("rm").description("Delete a finished task with its history and output, or many with filters and --yes"),
  ).action(async (flags: SelectionFlags, cmd: Command) => {
    const g = cmd.optsWithGlobals<GlobalOptions>();
    if (isBulk(flags)) return runBulk(io, g, BulkAction.DELETE, flags);
    const id = parseTaskId(flags.id![0]!);
    const res = await controlClient(g).deleteTask({ id });
    printMessage(io, g.output, DeleteTaskResponseSchema, res, () => `task ${id} deleted`);
  });
}
