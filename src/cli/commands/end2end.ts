import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { Command } from "commander";
import { taskClient } from "../client.js";
import { runLoad, type LoadProgress } from "../end2end/load.js";
import { buildReport, formatReport } from "../end2end/report.js";
import type { CliIO } from "../io.js";
import { UsageError } from "../io.js";
import { parseDurationFlag, parseInteger } from "../parse.js";
import type { GlobalOptions } from "../program.js";

interface End2EndFlags {
  count: string;
  types: string;
  concurrency: string;
  batch: string;
  timeout: string;
  json?: string;
  allowFailures: string;
}

/** Live progress: a bar on a terminal, a plain line every two seconds otherwise. */
function progressReporter(io: CliIO, total: number): { update(p: LoadProgress): void; stop(): void } {
  const describe = (p: LoadProgress) => ({
    created: p.created,
    running: p.running,
    succeeded: p.succeeded,
    failed: p.failed,
    rate: Math.round(((p.succeeded + p.failed + p.cancelled) / Math.max(1, p.elapsedMs)) * 1000),
  });
  if (io.isTTY) {
    // Loaded here, not at start-up: only an interactive end2end run draws a bar.
    const cliProgress = createRequire(import.meta.url)("cli-progress") as typeof import("cli-progress");
    const bar = new cliProgress.SingleBar(
      {
        format: "{bar} {percentage}% | created {created} | running {running} | succeeded {succeeded} | failed {failed} | {rate} tasks/s",
        stream: process.stderr,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, describe({ created: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0, total, elapsedMs: 0 }));
    return {
      update: (p) => bar.update(p.succeeded + p.failed + p.cancelled, describe(p)),
      stop: () => bar.stop(),
    };
  }
  let last = 0;
  return {
    update(p) {
      if (Date.now() - last < 2_000) return;
      last = Date.now();
      const d = describe(p);
      io.stderr.write(`end2end: created ${d.created}/${total}, running ${d.running}, succeeded ${d.succeeded}, failed ${d.failed}, ${d.rate} tasks/s\n`);
    },
    stop: () => undefined,
  };
}

/** Registers `end2end`: a load test of a running system that tracks only its own tasks. */
export function registerEnd2EndCommand(program: Command, io: CliIO): void {
  program
    .command("end2end")
    .description("Load-test a running system: create tasks, follow only those until they finish, report throughput and latency")
    .option("-n, --count <n>", "tasks to create", "100")
    .option("--types <list>", "comma-separated task types, used round-robin (shell needs --enable-shell on the server)", "run_query,send_email")
    .option("--concurrency <n>", "concurrent create calls", "8")
    .option("--batch <n>", "tasks per CreateTasks call (1 = one CreateTask per task)", "1")
    .option("--timeout <duration>", "give up waiting after this long, e.g. 90s, 10m", "5m")
    .option("--json <file>", "also write the report as JSON to this file")
    .option("--allow-failures <n>", "still pass with up to this many FAILED tasks", "0")
    .action(async (flags: End2EndFlags, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const count = parseInteger(flags.count, "--count", 1, Number.MAX_SAFE_INTEGER);
      const types = flags.types.split(",").map((t) => t.trim()).filter(Boolean);
      if (types.length === 0) throw new UsageError("--types: give at least one task type");
      const options = {
        tasks: count,
        types,
        concurrency: parseInteger(flags.concurrency, "--concurrency", 1, 1000),
        batch: parseInteger(flags.batch, "--batch", 1, 5000),
        timeoutMs: parseDurationFlag(flags.timeout, "--timeout"),
        runId: randomBytes(4).toString("hex"),
      };
      const allowFailures = parseInteger(flags.allowFailures, "--allow-failures", 0, Number.MAX_SAFE_INTEGER);
      const client = taskClient(g);
      // Fail fast on types the server does not know or has disabled.
      const known = new Map((await client.listTaskTypes({})).types.map((t) => [t.name, t.enabled]));
      for (const type of types) {
        if (!known.has(type)) throw new UsageError(`--types: the server has no task type "${type}" (it has ${[...known.keys()].join(", ")})`);
        if (!known.get(type)) throw new UsageError(`--types: "${type}" is disabled on the server`);
      }
      const progress = progressReporter(io, count);
      let result;
      try {
        result = await runLoad(client, options, progress.update);
      } finally {
        progress.stop();
      }
      const report = buildReport(result, count, allowFailures);
      if (g.output === "json") io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else io.stdout.write(`${formatReport(report)}\n`);
      if (flags.json) await writeFile(flags.json, `${JSON.stringify(report, null, 2)}\n`);
      if (!report.passed) throw new End2EndFailed(report.timed_out ? "timed out before every task finished" : `${report.failed} failed, ${report.unfinished} unfinished, ${report.cancelled} cancelled`);
    });
}

/** The load test ran but did not pass; the report is already printed. */
export class End2EndFailed extends Error {
  override name = "End2EndFailed";
}
