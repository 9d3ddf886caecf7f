import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Command, Option } from "commander";
import { durationFromMs } from "../../api/convert.js";
import {
  CancelTaskResponseSchema,
  CreateTaskResponseSchema,
  GetTaskHistoryResponseSchema,
  GetTaskResponseSchema,
  GetTaskStatusCountsResponseSchema,
  ListTasksResponseSchema,
  ListTaskTypesResponseSchema,
  RetryTaskResponseSchema,
  TaskStatus,
  CreateTaskRequestSchema,
  TaskBackoffSchema,
  UniqueWhileSchema,
  type CreateTaskResponse,
  TaskFileInputSchema,
  ShellCheckLevel,
} from "../../gen/task/v1/task_pb.js";
import { parseFileFlag, registerFileCommands, uploadFileFlags } from "./files.js";
import { BulkAction } from "../../gen/task/v1/control_pb.js";
import { taskClient } from "../client.js";
import { addSelectionFlags, isBulk, parseStatus, registerControlCommands, runBulk, type SelectionFlags } from "./control.js";
import { watchTaskList } from "./list-watch.js";
import { registerObserveCommands } from "./observe.js";
import type { CliIO } from "../io.js";
import { UsageError } from "../io.js";
import { printMessage } from "../output.js";
import { collect, labelsFlag, parseDurationFlag, parseInteger, parseParameterFlags, parseTaskId, parseTime } from "../parse.js";
import type { GlobalOptions } from "../program.js";
import { historyTable, statusCountsTable, taskListTable, taskTable, taskTypesTable } from "../views.js";

const idOption = () => new Option("--id <id>", "task id").makeOptionMandatory();

interface CreateFlags {
  type: string;
  param?: string[];
  paramsJson?: string;
  priority?: string;
  maxAttempts?: string;
  timeout?: string;
  runAt?: string;
  delay?: string;
  idempotencyKey?: string;
  queue?: string;
  key?: string;
  on?: string;
  backoffBase?: string;
  backoffMax?: string;
  expireAfter?: string;
  uniqueWhile?: string;
  units?: string;
  file?: string[];
  strict?: boolean;
}

async function buildCreateRequest(name: string, flags: CreateFlags) {
  const parameters = await parseParameterFlags(flags);
  if (flags.runAt !== undefined && flags.delay !== undefined) throw new UsageError("--run-at and --delay cannot be combined");
  let runAt: Date | undefined;
  if (flags.runAt !== undefined) runAt = parseTime(flags.runAt, "--run-at");
  if (flags.delay !== undefined) runAt = new Date(Date.now() + parseDurationFlag(flags.delay, "--delay"));
  return create(CreateTaskRequestSchema, {
    name,
    type: flags.type,
    parameters: parameters as never,
    priority: flags.priority === undefined ? 0 : parseInteger(flags.priority, "--priority", -1000, 1000),
    maxAttempts: flags.maxAttempts === undefined ? 0 : parseInteger(flags.maxAttempts, "--max-attempts", 1, 100),
    timeout: flags.timeout === undefined ? undefined : durationFromMs(parseDurationFlag(flags.timeout, "--timeout")),
    runAt: runAt ? timestampFromDate(runAt) : undefined,
    idempotencyKey: flags.idempotencyKey ?? "",
    queue: flags.queue ?? "",
    key: flags.key ?? "",
    labels: labelsFlag(flags.on, "--on") ?? {},
    backoff: backoffFrom(flags),
    expireAfter: flags.expireAfter === undefined ? undefined : durationFromMs(parseDurationFlag(flags.expireAfter, "--expire-after")),
    strictShellCheck: flags.strict ?? false,
    uniqueWhile: uniqueWhileFrom(flags.uniqueWhile),
    units: flags.units === undefined ? 0 : parseInteger(flags.units, "--units", 1, 1_000_000),
  });
}

/** --unique-while unfinished | <duration>. */
function uniqueWhileFrom(value: string | undefined) {
  if (value === undefined) return undefined;
  if (value === "unfinished") return create(UniqueWhileSchema, { mode: { case: "unfinished", value: true } });
  return create(UniqueWhileSchema, { mode: { case: "window", value: durationFromMs(parseDurationFlag(value, "--unique-while")) } });
}

/** What `task create` says besides the task: whether it was created, and if not, what answered instead. */
function createdNote(res: CreateTaskResponse, flags: CreateFlags): string {
  const id = res.task?.id;
  if (!res.created && flags.idempotencyKey !== undefined && res.task?.idempotencyKey === flags.idempotencyKey) {
    return `not created: idempotency key "${flags.idempotencyKey}" was already used by task ${id}; this is that task`;
  }
  if (flags.uniqueWhile === undefined) return "";
  const held = flags.uniqueWhile === "unfinished" ? "is unfinished" : `was created less than ${flags.uniqueWhile} ago`;
  return res.created
    ? `created: no task of key "${res.task?.key}" held it (--unique-while ${flags.uniqueWhile})`
    : `not created: task ${id} of key "${res.task?.key}" in queue ${res.task?.queue} ${held} (--unique-while); this is that task`;
}

/** --backoff-base and --backoff-max, given together or not at all. */
function backoffFrom(flags: CreateFlags) {
  if (flags.backoffBase === undefined && flags.backoffMax === undefined) return undefined;
  if (flags.backoffBase === undefined || flags.backoffMax === undefined) throw new UsageError("--backoff-base and --backoff-max go together");
  return create(TaskBackoffSchema, {
    base: durationFromMs(parseDurationFlag(flags.backoffBase, "--backoff-base")),
    max: durationFromMs(parseDurationFlag(flags.backoffMax, "--backoff-max")),
  });
}

/** `history --id N`, registered both at the top level and under `task`. */
function addHistoryCommand(parent: Command, io: CliIO): void {
  parent
    .command("history")
    .alias("h")
    .description("Show every state change of a task, oldest first")
    .addOption(idOption())
    .action(async (flags: { id: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const res = await taskClient(g).getTaskHistory({ id: parseTaskId(flags.id) });
      printMessage(io, g.output, GetTaskHistoryResponseSchema, res, historyTable);
    });
}

/** Registers `task` (alias `t`) and its subcommands, plus top-level `history`. */
export function registerTaskCommands(program: Command, io: CliIO): void {
  const task = program.command("task").alias("t").description("Create, inspect and control tasks on a running server");

  task
    .command("create")
    .alias("c")
    .description("Create a task; prints it (id first)")
    .argument("<name>", "a label for people")
    .requiredOption("--type <type>", "task type (see `task-cli task types`)")
    .option("-p, --param <key=value>", "a parameter; repeatable. JSON values (numbers, true, [..]) are parsed", collect)
    .option("--params-json <json>", "parameters as a JSON object, or @file to read them from a file")
    .option("--priority <n>", "higher runs first (-1000..1000)")
    .option("--max-attempts <n>", "attempts before FAILED (default: the type's)")
    .option("--timeout <duration>", "limit per attempt, e.g. 30s, 5m (default: the type's)")
    .option("--run-at <time>", "not before this ISO-8601 time")
    .option("--delay <duration>", "not before this long from now, e.g. 5m")
    .option("--idempotency-key <key>", "repeat-safe key: the same key and request return the same task")
    .option("--queue <name>", "the queue to wait in (default: default; see `task-cli queue list`)")
    .option("--key <key>", "what the task competes for in its queue (a tenant, a host): the queue's limit per key and fair turns apply (default: the queue's key template)")
    .option("--on <k=v,...>", "run only on a worker or agent with these labels (serve --labels, agent --labels), e.g. region=eu,gpu=true (default: any)")
    .option("--backoff-base <duration>", "this task's delay before its first retry, doubling each attempt (with --backoff-max; default: the workers')")
    .option("--backoff-max <duration>", "this task's longest delay between attempts (with --backoff-base)")
    .option("--units <n>", "units of its rate limit the task takes when it starts (default 1; at most the limit's burst)")
    .option("--expire-after <duration>", "end EXPIRED if not started this long after it is due, e.g. 10m (1s-366d; default: the queue's, else never)")
    .option("--unique-while <unfinished|duration>", "with a key: answer with the queue's task of this key instead of creating one, while it is unfinished or for this long after it was created (1s-366d), e.g. 10m")
    .option("--file <name=@path>", "an input file, uploaded first (streamed); the task reads it as $TASK_INPUT_DIR/<name>; repeatable", collect)
    .option("--strict", "shell: refuse the command when shellcheck reports an error-level finding (its warnings are printed either way)")
    .action(async (name: string, flags: CreateFlags, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const request = await buildCreateRequest(name, flags);
      // Checked before anything is uploaded; the uploads before the task (CreateTask names them).
      (flags.file ?? []).forEach(parseFileFlag);
      request.files = (await uploadFileFlags(g, flags.file ?? [])).map((f) => create(TaskFileInputSchema, f));
      const res = await taskClient(g).createTask(request);
      // On stderr, so `-o json` output and scripts reading the id stay clean.
      for (const w of res.warnings) io.stderr.write(`warning: ${w.field} line ${w.line}:${w.column}: ${w.message} [${w.code}, ${ShellCheckLevel[w.level].toLowerCase()}]\n`);
      printMessage(io, g.output, CreateTaskResponseSchema, res, (r, width) =>
        [taskTable(r.task, width), createdNote(r, flags)].filter((s) => s !== "").join("\n"),
      );
    });

  task
    .command("get")
    .alias("g")
    .description("Show one task")
    .addOption(idOption())
    .action(async (flags: { id: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const res = await taskClient(g).getTask({ id: parseTaskId(flags.id) });
      printMessage(io, g.output, GetTaskResponseSchema, res, (r, width) => taskTable(r.task, width));
    });

  task
    .command("list")
    .aliases(["l", "ls"])
    .description("List tasks, newest first (all statuses unless --status is given)")
    .option("--status <status>", "only this status; repeatable", collect)
    .option("--type <type>", "only this type; repeatable", collect)
    .option("--queue <name>", "only this queue; repeatable", collect)
    .option("-n, --page-number <n>", "1-based page number", "1")
    .option("-c, --page-size <n>", "tasks per page (1-1000)", "50")
    .option("-w, --watch", "keep the list updated (in place on a terminal, one line per change otherwise) until interrupted")
    .action(async (flags: { status?: string[]; type?: string[]; queue?: string[]; pageNumber: string; pageSize: string; watch?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const filter = {
        statuses: (flags.status ?? []).map(parseStatus),
        types: flags.type ?? [],
        queues: flags.queue ?? [],
        pageNumber: parseInteger(flags.pageNumber, "--page-number", 1, 1_000_000),
        pageSize: parseInteger(flags.pageSize, "--page-size", 1, 1000),
      };
      if (flags.watch) {
        if (filter.pageNumber !== 1) throw new UsageError("--watch shows the first page: leave out --page-number");
        return watchTaskList(io, g, filter);
      }
      const res = await taskClient(g).listTasks(filter);
      printMessage(io, g.output, ListTasksResponseSchema, res, taskListTable);
    });

  task
    .command("status")
    .aliases(["s", "stat"])
    .description("Count tasks in every status")
    .action(async (_flags: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const res = await taskClient(g).getTaskStatusCounts({});
      printMessage(io, g.output, GetTaskStatusCountsResponseSchema, res, statusCountsTable);
    });

  addSelectionFlags(task.command("cancel").description("Cancel a task that has not finished, or many with filters and --yes"))
    .option("--reason <text>", "recorded in the task's history")
    .action(async (flags: SelectionFlags, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      if (isBulk(flags)) return runBulk(io, g, BulkAction.CANCEL, flags);
      const res = await taskClient(g).cancelTask({ id: parseTaskId(flags.id![0]!), reason: flags.reason ?? "" });
      printMessage(io, g.output, CancelTaskResponseSchema, res, (r, width) =>
        r.task?.status === TaskStatus.RUNNING
          ? `${taskTable(r.task, width)}\ncancellation requested: its worker stops it and records CANCELLED (follow with \`task-cli watch --id ${r.task.id}\`)`
          : taskTable(r.task, width),
      );
    });

  addSelectionFlags(task.command("retry").description("Queue a FAILED or CANCELLED task again, with its attempts reset, or many with filters and --yes")).action(
    async (flags: SelectionFlags, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      if (isBulk(flags)) return runBulk(io, g, BulkAction.RETRY, flags);
      const res = await taskClient(g).retryTask({ id: parseTaskId(flags.id![0]!) });
      printMessage(io, g.output, RetryTaskResponseSchema, res, (r, width) => taskTable(r.task, width));
    },
  );

  task
    .command("types")
    .description("List the registered task types and their parameters")
    .action(async (_flags: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const res = await taskClient(g).listTaskTypes({});
      printMessage(io, g.output, ListTaskTypesResponseSchema, res, taskTypesTable);
    });

  registerControlCommands(task, io);
  addHistoryCommand(task, io);
  addHistoryCommand(program, io);
  registerObserveCommands([task, program], io);
  registerFileCommands(program, io);
}
