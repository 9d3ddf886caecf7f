import { chownSync, constants, mkdtempSync, statSync, writeFileSync } from "node:fs";
import { open, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

/** How often the worker looks at a shell task's $TASK_PROGRESS file. */
export const PROGRESS_FILE_POLL_MS = 250;

/** The most of the file's end read per look: the last line must fit. */
const TAIL_BYTES = 4096;

/**
 * Parses one line a shell command wrote to $TASK_PROGRESS: `FRACTION [MESSAGE]`, the fraction as
 * 0..1 (`0.42`) or a percentage (`42%`). Undefined for anything else (ignored, not an error).
 */
export function parseProgressLine(line: string): { fraction: number; message: string } | undefined {
  const m = /^\s*([0-9]*\.?[0-9]+)(%?)(?:\s+(.*?))?\s*$/.exec(line);
  if (!m) return undefined;
  const value = Number(m[1]) / (m[2] ? 100 : 1);
  return Number.isFinite(value) ? { fraction: value, message: m[3] ?? "" } : undefined;
}

/**
 * $TASK_PROGRESS of one shell attempt: a regular file in a directory of its own, owned by the user
 * the command runs as, which the worker polls every PROGRESS_FILE_POLL_MS and reads the LAST line of
 * (so `>>` appending and `>` overwriting both work, and a command never blocks on it, as it could
 * on a FIFO nobody reads). stdout and stderr are untouched.
 */
export class ProgressFile {
  private timer: NodeJS.Timeout | undefined;
  private seen = "";
  private last = "";
  private polling: Promise<void> = Promise.resolve();

  private constructor(
    private readonly dir: string,
    readonly path: string,
    /** The uid the file must belong to: the command's user. */
    private readonly owner: number,
    private readonly onProgress: (fraction: number, message: string) => void,
  ) {}

  /**
   * Creates the file (for `runAs`, when commands run as another user) and starts polling it.
   * Synchronous (a few system calls), so the shell plugin can make it as it starts the command.
   */
  static create(onProgress: (fraction: number, message: string) => void, runAs?: { uid: number; gid: number }): ProgressFile {
    const dir = mkdtempSync(path.join(os.tmpdir(), "task-progress-"));
    const file = path.join(dir, "progress");
    writeFileSync(file, "", { mode: 0o600 });
    if (runAs) {
      chownSync(dir, runAs.uid, runAs.gid);
      chownSync(file, runAs.uid, runAs.gid);
    }
    const progress = new ProgressFile(dir, file, runAs?.uid ?? statSync(file).uid, onProgress);
    progress.timer = setInterval(() => void progress.poll(false), PROGRESS_FILE_POLL_MS);
    return progress;
  }

  private poll(final: boolean): Promise<void> {
    this.polling = this.polling.then(() => this.read(final)).catch(() => {});
    return this.polling;
  }

  /** Reads the file's last complete line (at the end, an unterminated last line counts too). */
  private async read(final: boolean): Promise<void> {
    // The command owns the directory and may replace the file: never follow a link it planted to
    // a file of the worker's (a symlink: O_NOFOLLOW; a hard link: not owned by the command's user).
    const handle = await open(this.path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    let text: string;
    try {
      const info = await handle.stat();
      if (!info.isFile() || info.uid !== this.owner) return;
      const key = `${info.size}:${info.mtimeMs}`;
      if (key === this.seen && !final) return;
      this.seen = key;
      if (info.size === 0) return;
      const length = Math.min(TAIL_BYTES, info.size);
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buffer, 0, length, info.size - length);
      text = buffer.subarray(0, bytesRead).toString("utf8");
    } finally {
      await handle.close();
    }
    const lines = text.split("\n");
    const partial = lines.pop() ?? "";
    const line = final && partial.trim() !== "" ? partial : lines.at(-1);
    if (line === undefined || line === this.last) return;
    this.last = line;
    const parsed = parseProgressLine(line);
    if (parsed) this.onProgress(parsed.fraction, parsed.message);
  }

  /** The command ended: one last look, then the file goes. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.poll(true);
    await rm(this.dir, { recursive: true, force: true });
  }
}
