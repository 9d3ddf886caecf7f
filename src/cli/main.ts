import { ConnectError, Code } from "@connectrpc/connect";
import { CommanderError } from "commander";
import { ConfigError } from "../config.js";
import { buildProgram } from "./program.js";
import { UsageError, type CliIO } from "./io.js";

/** Exit code and one stderr line for anything a command throws. */
export function describeFailure(err: unknown): { code: number; message: string } {
  if (err instanceof ConnectError) return { code: 1, message: `error: ${Code[err.code] ?? err.code}: ${err.rawMessage}` };
  if (err instanceof UsageError || err instanceof ConfigError) return { code: 2, message: `error: ${err.message}` };
  return { code: 1, message: `error: ${err instanceof Error ? err.message : String(err)}` };
}

/** Runs the CLI against argv and returns the exit code (0 on success). */
export async function run(argv: string[], io: CliIO): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    // Commander already printed its own message (unknown option, --help, --version).
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    const failure = describeFailure(err);
    io.stderr.write(`${failure.message}\n`);
    return failure.code;
  }
}

/** Entry point of bin/task-cli.js. */
export async function main(argv: string[]): Promise<void> {
  const code = await run(argv, { stdout: process.stdout, stderr: process.stderr, isTTY: Boolean(process.stdout.isTTY) });
  // Exit explicitly: idle keep-alive sockets of the API client must not hold the process open.
  // stdout and stderr are synchronous for files and pipes on Linux, so nothing written is lost.
  process.exit(code);
}
