import { run } from "../../src/cli/main.js";

/** What one in-process CLI run printed and returned. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** How the in-process CLI sees its terminal: none by default, as under CI. */
export interface CliTerminal {
  /** Pretend stdout is a terminal this wide. */
  columns?: number;
}

/** Runs task-cli in-process with captured output, as `task-cli ...args`. */
export async function runCli(args: string[], terminal: CliTerminal = {}): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const code = await run(["node", "task-cli", ...args], {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    isTTY: terminal.columns !== undefined,
    columns: terminal.columns,
  });
  return { code, stdout, stderr };
}
