import { Command } from "commander";
import { GetQueueResponseSchema, ListQueuesResponseSchema, ListWorkersResponseSchema, PauseQueueResponseSchema, ResumeQueueResponseSchema, UpdateQueueResponseSchema } from "../../gen/task/v1/queue_pb.js";
import { queueClient, taskClient, workerClient } from "../client.js";
import type { CliIO } from "../io.js";
import { UsageError } from "../io.js";
import { printMessage } from "../output.js";
import { parseDurationFlag, parseInteger } from "../parse.js";
import { durationFromMs } from "../../api/convert.js";
import type { GlobalOptions } from "../program.js";
import { queueListTable, queueTable, workerListTable } from "../queue-views.js";

/** `queue set`'s options. */
interface SetFlags {
  concurrency?: string;
  unlimited?: boolean;
  keyConcurrency?: string;
  keyLimit?: string[];
  keyWeight?: string[];
  keyTemplate?: string;
  expireAfter?: string;
  /** false with --no-expiry. */
  expiry?: boolean;
}

/** Collects a repeatable option's values. */
function collectFlag(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Registers `queue list|get|set|pause|resume` and `workers`. */
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
    .command("get")
    .alias("g")
    .description("Show one queue: its settings, and with limits per key each key's running tasks against its limit")
    .argument("<name>", "the queue")
    .action(async (name: string, _flags: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const res = await queueClient(g).getQueue({ name });
      printMessage(io, g.output, GetQueueResponseSchema, res, (r) => queueTable(r.queue));
    });

  queue
    .command("set")
    .description("Change a queue's settings: its concurrency limit, its limit per key, its key template, its tasks' default expiry")
    .argument("<name>", "the queue")
    .option("--concurrency <n>", "most tasks of the queue RUNNING at once, across every worker process (0 or more)")
    .option("--unlimited", "remove the concurrency limit")
    .option("--key-concurrency <n>", "most tasks of one key RUNNING at once, across every worker process (0 or more; `none`: unlimited)")
    .option("--key-limit <key=n>", "the limit of one named key, overriding --key-concurrency; repeatable; replaces the queue's named limits (`--key-limit none` clears them)", collectFlag)
    .option("--key-weight <key=w>", "the weight of one named key in the turns between keys (1-1000, default 1): weight 3 starts 3 tasks per 1 of a weight-1 key while both wait; repeatable; replaces the queue's weights (`--key-weight none` clears them)", collectFlag)
    .option("--key-template <template>", "derive the key of tasks created without one, e.g. '{{params.to | domain}}' (filters: domain, lower, upper, trim; `none`: no template)")
    .option("--expire-after <duration>", "tasks created in the queue without --expire-after end EXPIRED if not started this long after they are due, e.g. 10m")
    .option("--no-expiry", "remove the queue's default expiry")
    .action(async (name: string, flags: SetFlags, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      if (flags.concurrency !== undefined && flags.unlimited) throw new UsageError("--concurrency and --unlimited cannot be combined");
      const noExpiry = flags.expiry === false;
      if (flags.expireAfter !== undefined && noExpiry) throw new UsageError("--expire-after and --no-expiry cannot be combined");
      const paths: string[] = [];
      if (flags.concurrency !== undefined || flags.unlimited) paths.push("concurrency");
      if (flags.keyConcurrency !== undefined) paths.push("key_concurrency");
      if (flags.keyLimit !== undefined) paths.push("key_limits");
      if (flags.keyWeight !== undefined) paths.push("key_weights");
      if (flags.keyTemplate !== undefined) paths.push("key_template");
      if (flags.expireAfter !== undefined || noExpiry) paths.push("expire_after");
      if (paths.length === 0) {
        throw new UsageError("name a setting: --key-concurrency N, --key-limit KEY=N, --key-weight KEY=W, --key-template T, --concurrency N or --unlimited, --expire-after D or --no-expiry");
      }
      const concurrency = flags.concurrency === undefined ? undefined : parseInteger(flags.concurrency, "--concurrency", 0, 100_000);
      const keyConcurrency = flags.keyConcurrency === undefined || flags.keyConcurrency === "none" ? undefined : parseInteger(flags.keyConcurrency, "--key-concurrency", 0, 100_000);
      const keyLimits: Record<string, number> = {};
      for (const item of flags.keyLimit ?? []) {
        if (item === "none") continue;
        const eq = item.lastIndexOf("=");
        if (eq <= 0) throw new UsageError(`--key-limit ${item}: expected KEY=N`);
        keyLimits[item.slice(0, eq)] = parseInteger(item.slice(eq + 1), `--key-limit ${item.slice(0, eq)}`, 0, 100_000);
      }
      const keyWeights: Record<string, number> = {};
      for (const item of flags.keyWeight ?? []) {
        if (item === "none") continue;
        const eq = item.lastIndexOf("=");
        if (eq <= 0) throw new UsageError(`--key-weight ${item}: expected KEY=W`);
        keyWeights[item.slice(0, eq)] = parseInteger(item.slice(eq + 1), `--key-weight ${item.slice(0, eq)}`, 1, 1000);
      }
      const keyTemplate = flags.keyTemplate === "none" ? "" : (flags.keyTemplate ?? "");
      const expireAfter = flags.expireAfter === undefined ? undefined : durationFromMs(parseDurationFlag(flags.expireAfter, "--expire-after"));
      const res = await queueClient(g).updateQueue({ name, settings: { concurrency, keyConcurrency, keyLimits, keyWeights, keyTemplate, expireAfter }, updateMask: { paths } });
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
