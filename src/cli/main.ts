import { ConnectError, Code } from "@connectrpc/connect";
import { CommanderError } from "commander";
import { clientEnvNames, configEnvNames, ConfigError } from "../config.js";
import { buildProgram } from "./program.js";
import { UsageError, type CliIO } from "./io.js";

/** What a failure message may point at: the server address the command used. */
export interface FailureContext {
  address?: string;
}

/** A hint for the Connect errors a user can fix from the command line. */
function hintFor(err: ConnectError, context: FailureContext): string | undefined {
  if (err.code === Code.Unauthenticated) return `pass --token or set ${clientEnvNames.token} to one of the server's ${configEnvNames.apiTokens} or a token from \`task-cli token create\``;
  if (err.code === Code.PermissionDenied && /requires role/.test(err.rawMessage)) return "`task-cli whoami` shows the token's role; an admin can make a token with the role needed (`task-cli token create`)";
  // Node's TLS errors (unable to verify the first certificate, self-signed certificate in chain, ...)
  // reach here under various codes (Internal, Unavailable) depending on the protocol.
  if (/certificate|CERT_|self.signed/i.test(err.rawMessage)) {
    return `the server's TLS certificate is not trusted here: pass --ca FILE (${clientEnvNames.ca}) with the CA certificate that signed it`;
  }
  if (err.code === Code.Unavailable && /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|ECONNRESET/.test(err.rawMessage)) {
    return `is the server running at ${context.address ?? "the --address"}? start it with \`task-cli up\`, or point --address (${clientEnvNames.address}) at it`;
  }
  return undefined;
}

/** Exit code and one stderr line (plus a hint line where one helps) for anything a command throws. */
export function describeFailure(err: unknown, context: FailureContext = {}): { code: number; message: string } {
  if (err instanceof ConnectError) {
    const hint = hintFor(err, context);
    return { code: 1, message: `error: ${Code[err.code] ?? err.code}: ${err.rawMessage}${hint ? `\nhint: ${hint}` : ""}` };
  }
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
    const failure = describeFailure(err, { address: program.opts<{ address?: string }>().address });
    io.stderr.write(`${failure.message}\n`);
    return failure.code;
  }
}

/** Entry point of bin/task-cli.js. */
export async function main(argv: string[]): Promise<void> {
  // `task-cli logs --id 7 | head -1`: once the reader is gone there is nobody to tell, so every
  // command stops quietly (exit 0) instead of dying on an EPIPE stack trace.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EPIPE") process.exit(0);
      throw err;
    });
  }
  const isTTY = Boolean(process.stdout.isTTY);
  const code = await run(argv, { stdout: process.stdout, stderr: process.stderr, isTTY, columns: isTTY ? process.stdout.columns : undefined });
  // Exit explicitly: idle keep-alive sockets of the API client must not hold the process open.
  // stdout and stderr are synchronous for files and pipes on Linux, so nothing written is lost.
  process.exit(code);
}
