import { readFile } from "node:fs/promises";
import { ConnectError } from "@connectrpc/connect";
import { Command } from "commander";
import {
  GetScheduleResponseSchema,
  ListSchedulesResponseSchema,
  PauseScheduleResponseSchema,
  ResumeScheduleResponseSchema,
  CreateScheduleResponseSchema,
  TriggerScheduleResponseSchema,
  type Schedule,
} from "../../gen/task/v1/schedule_pb.js";
import { scheduleClient, taskClient, type ClientOptions } from "../client.js";
import type { CliIO } from "../io.js";
import { UsageError } from "../io.js";
import { printMessage } from "../output.js";
import { collect, labelsFlag, parseDurationFlag, parseInteger, parseParameterFlags } from "../parse.js";
import type { GlobalOptions } from "../program.js";
import { buildSpec, catchUpPolicies, overlapPolicies, parseScheduleFile } from "../schedule-file.js";
import { scheduleListTable, scheduleTable } from "../schedule-views.js";
import { taskTable } from "../views.js";

interface CreateFlags {
  cron: string;
  tz?: string;
  type: string;
  param?: string[];
  paramsJson?: string;
  priority?: string;
  maxAttempts?: string;
  timeout?: string;
  catchUp?: string;
  backfill?: string;
  overlap?: string;
  paused?: boolean;
  on?: string;
}

/** Every schedule on the server, following pages. */
async function allSchedules(options: ClientOptions): Promise<Schedule[]> {
  const client = scheduleClient(options);
  const out: Schedule[] = [];
  let pageToken = "";
  do {
    const res = await client.listSchedules({ pageSize: 1000, pageToken });
    out.push(...res.schedules);
    pageToken = res.nextPageToken;
  } while (pageToken !== "");
  return out;
}

/**
 * Makes the server's schedules match a file: creates the missing ones, updates the ones that
 * differ (an identical one is left untouched, so applying twice changes nothing), and with
 * `prune` deletes those the file does not list. Reports one line per schedule as it goes; a
 * failure names the entry, and the entries before it stay applied (applying again is safe).
 */
export async function applyScheduleFile(options: ClientOptions, text: string, file: string, prune: boolean, report: (line: string) => void): Promise<number> {
  const specs = parseScheduleFile(text, file);
  const client = scheduleClient(options);
  const existing = new Set((await allSchedules(options)).map((s) => s.spec!.name));
  for (const spec of specs) {
    try {
      if (existing.has(spec.name)) {
        const res = await client.updateSchedule({ name: spec.name, spec });
        report(`${res.changed ? "updated" : "unchanged"} ${spec.name}`);
      } else {
        await client.createSchedule({ spec });
        report(`created ${spec.name}`);
      }
    } catch (err) {
      const e = ConnectError.from(err);
      throw new ConnectError(`${file}: schedule "${spec.name}": ${e.rawMessage}`, e.code, undefined, undefined, e);
    }
  }
  let deleted = 0;
  if (prune) {
    const wanted = new Set(specs.map((s) => s.name));
    for (const name of [...existing].filter((n) => !wanted.has(n)).sort()) {
      await client.deleteSchedule({ name });
      report(`deleted ${name}`);
      deleted += 1;
    }
  }
  return specs.length + deleted;
}

async function createFlagsToSpec(name: string, flags: CreateFlags) {
  const parameters = await parseParameterFlags(flags);
  if (flags.backfill !== undefined && flags.catchUp !== undefined && flags.catchUp !== "backfill") {
    throw new UsageError("--backfill: only with --catch-up backfill");
  }
  return buildSpec(
    {
      name,
      cron: flags.cron,
      timeZone: flags.tz,
      type: flags.type,
      parameters,
      priority: flags.priority === undefined ? undefined : parseInteger(flags.priority, "--priority", -1000, 1000),
      maxAttempts: flags.maxAttempts === undefined ? undefined : parseInteger(flags.maxAttempts, "--max-attempts", 1, 100),
      timeoutMs: flags.timeout === undefined ? undefined : parseDurationFlag(flags.timeout, "--timeout"),
      // --backfill N alone means --catch-up backfill.
      catchUp: flags.catchUp ?? (flags.backfill === undefined ? undefined : "backfill"),
      backfillLimit: flags.backfill === undefined ? undefined : parseInteger(flags.backfill, "--backfill", 1, 1000),
      overlap: flags.overlap,
      paused: flags.paused,
      labels: labelsFlag(flags.on, "--on"),
    },
    "--",
  );
}

/** Registers `schedule` (alias `sch`) and its subcommands. */
export function registerScheduleCommands(program: Command, io: CliIO): void {
  const schedule = program.command("schedule").alias("sch").description("Recurring tasks from cron expressions, created once per tick");
  const globals = (cmd: Command) => cmd.optsWithGlobals<GlobalOptions>();

  schedule
    .command("create")
    .description("Create a schedule; its tasks are named after it")
    .argument("<name>", "unique schedule name")
    .requiredOption("--cron <expr>", "five fields (six with seconds first) or @hourly, @daily, ...; quote it")
    .option("--tz <zone>", "IANA time zone the expression is read in (default UTC)")
    .requiredOption("--type <type>", "task type (see `task-cli task types`)")
    .option("-p, --param <key=value>", "a task parameter; repeatable. Values may use {{scheduled_at}}, {{scheduled_date}}, {{schedule_name}}", collect)
    .option("--params-json <json>", "task parameters as a JSON object, or @file")
    .option("--priority <n>", "higher runs first (-1000..1000)")
    .option("--max-attempts <n>", "attempts before FAILED (default: the type's)")
    .option("--timeout <duration>", "limit per attempt, e.g. 30s (default: the type's)")
    .option("--catch-up <policy>", `missed ticks: ${Object.keys(catchUpPolicies).join(", ")} (default skip)`)
    .option("--backfill <n>", "with --catch-up backfill: run up to N missed ticks")
    .option("--overlap <policy>", `while the previous task is unfinished: ${Object.keys(overlapPolicies).join(", ")} (default allow)`)
    .option("--paused", "create it paused")
    .option("--on <k=v,...>", "its tasks run only on a worker or agent with these labels, e.g. region=eu (default: any)")
    .action(async (name: string, flags: CreateFlags, cmd: Command) => {
      const g = globals(cmd);
      const res = await scheduleClient(g).createSchedule({ spec: await createFlagsToSpec(name, flags) });
      printMessage(io, g.output, CreateScheduleResponseSchema, res, (r) => scheduleTable(r.schedule));
    });

  schedule
    .command("list")
    .aliases(["l", "ls"])
    .description("List schedules: expression, zone, next run, last run and its status, paused")
    .action(async (_flags: unknown, cmd: Command) => {
      const g = globals(cmd);
      const res = await scheduleClient(g).listSchedules({ pageSize: 1000 });
      printMessage(io, g.output, ListSchedulesResponseSchema, res, scheduleListTable);
    });

  schedule
    .command("get")
    .description("Show one schedule and the tasks it created most recently")
    .argument("<name>")
    .action(async (name: string, _flags: unknown, cmd: Command) => {
      const g = globals(cmd);
      const res = await scheduleClient(g).getSchedule({ name });
      const recent = g.output === "table" && res.schedule ? (await taskClient(g).listTasks({ scheduleIds: [res.schedule.id], pageSize: 10 })).tasks : [];
      printMessage(io, g.output, GetScheduleResponseSchema, res, (r) => scheduleTable(r.schedule, recent));
    });

  schedule
    .command("pause")
    .description("Stop a schedule from creating tasks")
    .argument("<name>")
    .action(async (name: string, _flags: unknown, cmd: Command) => {
      const g = globals(cmd);
      const res = await scheduleClient(g).pauseSchedule({ name });
      printMessage(io, g.output, PauseScheduleResponseSchema, res, (r) => scheduleTable(r.schedule));
    });

  schedule
    .command("resume")
    .description("Resume a paused schedule from its next tick (ticks passed while paused are dropped)")
    .argument("<name>")
    .action(async (name: string, _flags: unknown, cmd: Command) => {
      const g = globals(cmd);
      const res = await scheduleClient(g).resumeSchedule({ name });
      printMessage(io, g.output, ResumeScheduleResponseSchema, res, (r) => scheduleTable(r.schedule));
    });

  schedule
    .command("delete")
    .description("Delete a schedule (the tasks it created stay)")
    .argument("<name>")
    .action(async (name: string, _flags: unknown, cmd: Command) => {
      await scheduleClient(globals(cmd)).deleteSchedule({ name });
      io.stdout.write(`deleted ${name}\n`);
    });

  schedule
    .command("trigger")
    .description("Create one task from the schedule now (paused or not)")
    .argument("<name>")
    .action(async (name: string, _flags: unknown, cmd: Command) => {
      const g = globals(cmd);
      const res = await scheduleClient(g).triggerSchedule({ name });
      printMessage(io, g.output, TriggerScheduleResponseSchema, res, (r) => taskTable(r.task));
    });

  schedule
    .command("apply")
    .description("Make the server's schedules match a YAML file (idempotent); --prune deletes the ones it does not list")
    .requiredOption("-f, --file <path>", "schedules file (`schedules:` with a list; see the README)")
    .option("--prune", "delete schedules the file does not list")
    .action(async (flags: { file: string; prune?: boolean }, cmd: Command) => {
      const text = await readFile(flags.file, "utf8").catch((err: NodeJS.ErrnoException) => {
        throw new UsageError(`--file: cannot read ${flags.file} (${err.code ?? err.message})`);
      });
      const count = await applyScheduleFile(globals(cmd), text, flags.file, flags.prune ?? false, (line) => io.stdout.write(`${line}\n`));
      if (count === 0) io.stdout.write("no schedules in the file\n");
    });
}
