import { Command } from "commander";
import { ListQueuesResponseSchema, ListWorkersResponseSchema, PauseQueueResponseSchema, ResumeQueueResponseSchema, UpdateQueueResponseSchema } from "../../gen/task/v1/queue_pb.js";
import { queueClient, taskClient, workerClient } from "../client.js";
import type { CliIO } from "../io.js";
import { UsageError } from "../io.js";
import { printMessage } from "../output.js";
import { parseDurationFlag, parseInteger } from "../parse.js";
import { durationFromMs } from "../../api/convert.js";
import type { GlobalOptions } from "../program.js";
import { queueListTable, queueTable, workerListTable } from "../queue-views.js";

/** Registers `queue list|set|pause|resume` and `workers`. */
export function registerQueueCommands(program: Command, io: CliIO): void {
  const queue = program.command("queue").alias("q").description("List queues and change their settings (concurrency limit, paused)");

  queue
    .command("list")
    .aliases(["l", "ls"])
    .description("List queues: paused, limit, running, waiting, oldest waiting, workers serving it")
    .action(async (_flags: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      printMessage(io, g.output, ListQueuesResponseSchema, await queueClient(g).listQueues({}), queueListTable);
    });

  queue
    .command("set")
    .description("Change a queue's settings: --concurrency N (most RUNNING at once across all workers) or --unlimited; --expire-after D or --no-expiry")
    .argument("<name>", "the queue")
    .option("--concurrency <n>", "most tasks of the queue RUNNING at once, across every worker process (0 or more)")
    .option("--unlimited", "remove the concurrency limit")
    .option("--expire-after <duration>", "tasks created in the queue without --expire-after end EXPIRED if not started this long after they are due, e.g. 10m")
    .option("--no-expiry", "remove the queue's default expiry")
    .action(async (name: string, flags: { concurrency?: string; unlimited?: boolean; expireAfter?: string; expiry?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      if (flags.concurrency !== undefined && flags.unlimited) throw new UsageError("--concurrency and --unlimited cannot be combined");
      const noExpiry = flags.expiry === false;
      if (flags.expireAfter !== undefined && noExpiry) throw new UsageError("--expire-after and --no-expiry cannot be combined");
      const limit = flags.concurrency !== undefined || flags.unlimited;
      const expiry = flags.expireAfter !== undefined || noExpiry;
      if (!limit && !expiry) throw new UsageError("name a setting: --concurrency N or --unlimited, --expire-after D or --no-expiry");
      const concurrency = flags.concurrency === undefined ? undefined : parseInteger(flags.concurrency, "--concurrency", 0, 100_000);
      const expireAfter = flags.expireAfter === undefined ? undefined : durationFromMs(parseDurationFlag(flags.expireAfter, "--expire-after"));
      const paths = [...(limit ? ["concurrency"] : []), ...(expiry ? ["expire_after"] : [])];
      const res = await queueClient(g).updateQueue({ name, settings: { concurrency, expireAfter }, updateMask: { paths } });
      printMessage(io, g.output, UpdateQueueResponseSchema, res, (r) => queueTable(r.queue));
    });

  queue
    .command("pause")
    .description("Pause a queue: no new attempts start in it; running ones finish")
    .argument("<name>", "the queue")
    .action(async (name: string, _flags: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const res = await queueClient(g).pauseQueue({ name });
      printMessage(io, g.output, PauseQueueResponseSchema, res, (r) => queueTable(r.queue));
    });

  queue
    .command("resume")
    .description("Resume a paused queue: its tasks start again at once")
    .argument("<name>", "the queue")
    .action(async (name: string, _flags: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const res = await queueClient(g).resumeQueue({ name });
      printMessage(io, g.output, ResumeQueueResponseSchema, res, (r) => queueTable(r.queue));
    });

  program
    .command("workers")
    .description("List live worker processes (host, pid, busy/slots, queues, types) and the task types none of them runs")
    .action(async (_flags: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const [res, types] = await Promise.all([workerClient(g).listWorkers({}), taskClient(g).listTaskTypes({})]);
      printMessage(io, g.output, ListWorkersResponseSchema, res, (r, width) => workerListTable(r, types, width));
    });
}
