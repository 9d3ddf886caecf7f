import type { Kysely } from "kysely";
import type { Logger } from "../logger.js";
import type { LogSink } from "../plugins/types.js";
import type { Database } from "../store/schema.js";
import { appendLogLines, type LogLine } from "../store/task-logs.js";
import { storableText } from "../store/storable-text.js";
import { NUL_REPLACEMENT } from "../store/task-logs.js";

const FLUSH_INTERVAL_MS = 250;
const FLUSH_BATCH = 500;
const MAX_LINE_CHARS = 8_192;

/**
 * Collects an attempt's output lines and appends them to task_logs in batches (one statement per
 * batch, at most every 250 ms), numbered after what earlier attempts stored. A task keeps at most
 * `cap` lines plus one truncation marker; once the cap is hit this sink drops the rest. An attempt
 * that prints nothing costs no database work. Storage failures are logged, never fatal to the
 * task: output is a convenience, the outcome is what must be recorded.
 */
export class TaskLogSink implements LogSink {
  private buffer: Pick<LogLine, "stream" | "line">[] = [];
  private full = false;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly taskId: string,
    private readonly attempt: number,
    private readonly cap: number,
    private readonly logger: Logger,
  ) {}

  write(stream: LogLine["stream"], line: string): void {
    if (this.full) return;
    // NUL and lone surrogates would make PostgreSQL refuse the whole batch.
    // NUL shows as ␀ (a reader sees one was there); lone surrogates become U+FFFD.
    const cut = line.length > MAX_LINE_CHARS ? `${line.slice(0, MAX_LINE_CHARS)}…` : line;
    const clean = storableText(cut.replaceAll("\0", NUL_REPLACEMENT));
    this.buffer.push({ stream, line: clean });
    if (this.buffer.length >= FLUSH_BATCH) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), FLUSH_INTERVAL_MS);
  }

  private flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.buffer;
    this.buffer = [];
    if (batch.length > 0) {
      // Chained, so batches are numbered in order.
      this.flushing = this.flushing.then(async () => {
        if (this.full) return;
        try {
          const kept = await appendLogLines(this.db, this.taskId, this.attempt, batch, this.cap);
          if (kept < batch.length) this.full = true;
        } catch (err) {
          // Say so in the task's own output too, so a reader of its logs sees the gap.
          const message = err instanceof Error ? err.message : String(err);
          this.logger.warn({ err: message, lines: batch.length }, "dropped task output lines");
          await appendLogLines(this.db, this.taskId, this.attempt, [{ stream: "system", line: `[${batch.length} output line${batch.length === 1 ? "" : "s"} lost: ${message}]` }], this.cap).catch(
            () => undefined,
          );
        }
      });
    }
    return this.flushing;
  }

  /** Writes what is buffered; call once the attempt is over. */
  close(): Promise<void> {
    return this.flush();
  }
}
