import { Command, Option } from "commander";
import { clientEnvNames, configEnvNames, LOG_LEVELS } from "../config.js";
import { registerEnd2EndCommand } from "./commands/end2end.js";
import { registerQueueCommands } from "./commands/queue.js";
import { registerLimitCommands } from "./commands/limit.js";
import { registerScheduleCommands } from "./commands/schedule.js";
import { registerServiceCommands } from "./commands/service.js";
import { registerTaskCommands } from "./commands/task.js";
import { registerTokenCommands } from "./commands/token.js";
import { registerAuditCommand } from "./commands/audit.js";
import { registerAgentCommands } from "./commands/agent.js";
import type { CliIO } from "./io.js";
import { parseOutputFormat, type OutputFormat } from "./output.js";

/** Options every command sees (commander merges them with the command's own). */
export interface GlobalOptions {
  address: string;
  token?: string;
  /** A PEM file of the CA to trust for https:// addresses. */
  ca?: string;
  logLevel: string;
  output: OutputFormat;
}

/** The task-cli program; commands write to `io`, so tests can run it in-process. */
export function buildProgram(io: CliIO): Command {
  const program = new Command("task-cli")
    .description("Run background tasks reliably: a Connect API, workers and a CLI over PostgreSQL.")
    // One line for a usage mistake (which option is missing), not the whole help.
    .showHelpAfterError("(add --help for usage)")
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .exitOverride()
    .addOption(new Option("--address <url>", "API address of a running server").env(clientEnvNames.address).default("http://127.0.0.1:8080"))
    .addOption(new Option("--token <token>", "bearer token sent to the server").env(clientEnvNames.token))
    .addOption(new Option("--ca <file>", "PEM file of the CA that signed the server's certificate, trusted for https:// addresses (default: Node's trust store)").env(clientEnvNames.ca))
    .addOption(new Option("--log-level <level>", "log level for server-side commands").env(configEnvNames.logLevel).choices(LOG_LEVELS).default("info"))
    .addOption(new Option("-o, --output <format>", "output format: table, json or yaml").default("table").argParser(parseOutputFormat));
  registerServiceCommands(program, io);
  registerTaskCommands(program, io);
  registerEnd2EndCommand(program, io);
  registerScheduleCommands(program, io);
  registerQueueCommands(program, io);
  registerLimitCommands(program, io);
  registerTokenCommands(program, io);
  registerAuditCommand(program, io);
  registerAgentCommands(program, io);
  return program;
}
