/** Where a command writes. Tests pass buffers; main passes process.stdout/stderr. */
export interface CliIO {
  /** Bytes as well as text: `artifacts get` writes a file's bytes (process.stdout takes both; tests collect). */
  stdout: { write(text: string | Uint8Array): unknown; once?(event: "drain", listener: () => void): unknown };
  stderr: { write(text: string): unknown };
  /** Whether stdout is an interactive terminal (progress bars, colours). */
  isTTY: boolean;
  /** The terminal's width when stdout is one; tables then use it instead of DEFAULT_COLUMNS. */
  columns?: number;
}

/** The width tables fit when stdout is not a terminal (a pipe, a file, a test). */
export const DEFAULT_COLUMNS = 100;

/** Raised for bad command-line input; printed as one line, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}
