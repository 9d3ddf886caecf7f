/** Where a command writes. Tests pass buffers; main passes process.stdout/stderr. */
export interface CliIO {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  /** Whether stdout is an interactive terminal (progress bars, colours). */
  isTTY: boolean;
}

/** Raised for bad command-line input; printed as one line, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}
