import { Command } from "commander";
import { DeleteRateLimitResponseSchema, ListRateLimitsResponseSchema, SetRateLimitResponseSchema, type RateLimit } from "../../gen/task/v1/limit_pb.js";
import { durationFromMs, durationToMs } from "../../api/convert.js";
import { formatDuration } from "../../duration.js";
import { limitClient } from "../client.js";
import { UsageError, type CliIO } from "../io.js";
import { makeTable } from "../output.js";
import { printMessage } from "../output.js";
import { parseInteger } from "../parse.js";
import type { GlobalOptions } from "../program.js";

/** `limit set`'s options. */
interface SetFlags {
  rate: string;
  burst?: string;
  perKey?: boolean;
  queue?: string;
  type?: string;
}

const PERIODS: Record<string, number> = { s: 1000, sec: 1000, min: 60_000, m: 60_000, h: 3_600_000, hour: 3_600_000, d: 86_400_000, day: 86_400_000 };

/** "100/min" -> {rate 100, periodMs 60000}; also "5/10s". */
export function parseRate(text: string): { rate: number; periodMs: number } {
  const m = /^(\d+)\/(\d*)(s|sec|min|m|h|hour|d|day)$/.exec(text.trim());
  if (!m) throw new UsageError(`--rate ${text}: expected N/PERIOD, e.g. 100/min, 5/s, 20/10s (periods: s, min, h, d)`);
  const rate = parseInteger(m[1]!, "--rate", 1, 1_000_000);
  const periodMs = (m[2] ? parseInteger(m[2], "--rate period", 1, 86_400) : 1) * PERIODS[m[3]!]!;
  return { rate, periodMs };
}

/** A limit's rate as a person reads it. */
function rateText(l: RateLimit): string {
  return `${l.rate}/${formatDuration(Math.round(l.period ? durationToMs(l.period) : 0))}`;
}

/** Every limit, one line each. */
function limitTable(limits: RateLimit[]): string {
  if (limits.length === 0) return "no rate limits";
  const table = makeTable(["LIMIT", "SCOPE", "RATE", "BURST", "PER KEY", "TOKENS LEFT", "WAITING"]);
  for (const l of limits) {
    table.push([l.name, l.queue ? `queue ${l.queue}` : `type ${l.taskType}`, rateText(l), String(l.burst), l.perKey ? `yes (${l.buckets} keys)` : "no", l.tokens.toFixed(1), l.waiting.toString()]);
  }
  return table.toString();
}

/** Registers `limit set|list|delete`. */
export function registerLimitCommands(program: Command, io: CliIO): void {
  const limit = program.command("limit").description("Named rate limits: the tasks of a queue or of a type start at most RATE per period, BURST at once");

  limit
    .command("set")
    .description("Create or replace a rate limit over the tasks of a queue (--queue) or of a type (--type); admin role")
    .argument("<name>", "the limit's name")
    .requiredOption("--rate <n/period>", "units added per period, e.g. 100/min, 5/s, 20/10s")
    .option("--burst <n>", "most units at once (default: 1)")
    .option("--per-key", "one bucket per task key")
    .option("--queue <queue>", "the limit covers every task of this queue")
    .option("--type <type>", "the limit covers every task of this type (in a queue without its own limit)")
    .action(async (name: string, flags: SetFlags, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      if ((flags.queue === undefined) === (flags.type === undefined)) throw new UsageError("name exactly one scope: --queue QUEUE or --type TYPE");
      const { rate, periodMs } = parseRate(flags.rate);
      const burst = flags.burst === undefined ? 1 : parseInteger(flags.burst, "--burst", 1, 1_000_000);
      const res = await limitClient(g).setRateLimit({
        limit: { name, rate, period: durationFromMs(periodMs), burst, perKey: flags.perKey ?? false, queue: flags.queue ?? "", taskType: flags.type ?? "" },
      });
      printMessage(io, g.output, SetRateLimitResponseSchema, res, (r) => limitTable(r.limit ? [r.limit] : []));
    });

  limit
    .command("list")
    .aliases(["l", "ls"])
    .description("List rate limits with the tokens left in each and the tasks waiting under it")
    .action(async (_flags: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      printMessage(io, g.output, ListRateLimitsResponseSchema, await limitClient(g).listRateLimits({}), (r) => limitTable(r.limits));
    });

  limit
    .command("delete")
    .description("Delete a rate limit: its waiting tasks start as others do; admin role")
    .argument("<name>", "the limit")
    .action(async (name: string, _flags: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      printMessage(io, g.output, DeleteRateLimitResponseSchema, await limitClient(g).deleteRateLimit({ name }), () => `rate limit ${name} deleted`);
    });
}
