import type { Kysely } from "kysely";
import type { Logger } from "../logger.js";
import type { LogSink } from "../plugins/types.js";
import type { Database } from "../store/schema.js";
import { appendLogLines, lastLogSeq, type LogLine } from "../store/task-logs.js";

const FLUSH_INTERVAL_MS = 250;
const FLUSH_BATCH = 500;
const MAX_LINE_CHARS = 8_192;

/**
 * Collects a task's output lines and appends them to task_logs in batches (one statement per batch,
 * at most every 250 ms), numbering them after what earlier attempts stored. Past the per-task cap
 * one truncation marker is written and the rest dropped. Storage failures are logged, never fatal
 * to the task: output is a convenience, the outcome is what must be recorded.
 */
export class TaskLogSink implements LogSink {
  private buffer: LogLine[] = [];
  private truncated = false;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly db: Kysely<Database>,
    private readonly taskId: string,
    private readonly attempt: number,
    private seq: number,
    private readonly cap: number,
    private readonly logger: Logger,
  ) {}

  /** A sink that appends after the task's existing lines. */
  static async open(db: Kysely<Database>, taskId: string, attempt: number, cap: number, logger: Logger): Promise<TaskLogSink> {
    return new TaskLogSink(db, taskId, attempt, await lastLogSeq(db, taskId), cap, logger);
  }

  write(stream: LogLine["stream"], line: string): void {
    if (this.seq >= this.cap) {
      if (this.truncated) return;
      this.truncated = true;
      this.push("system", `[output truncated: more than ${this.cap} lines]`);
      return;
    }
    this.push(stream, line.length > MAX_LINE_CHARS ? `${line.slice(0, MAX_LINE_CHARS)}…` : line);
  }

  private push(stream: LogLine["stream"], line: string): void {
    this.buffer.push({ seq: ++this.seq, attempt: this.attempt, stream, line });
    if (this.buffer.length >= FLUSH_BATCH) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), FLUSH_INTERVAL_MS);
  }

  private flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.buffer;
    this.buffer = [];
    if (batch.length > 0) {
      // Chain so batches land in order.
      this.flushing = this.flushing.then(() =>
        appendLogLines(this.db, this.taskId, batch).catch((err: unknown) =>
          this.logger.warn({ err: err instanceof Error ? err.message : String(err), lines: batch.length }, "dropped task output lines"),
        ),
      );
    }
    return this.flushing;
  }

  /** Writes what is buffered; call once the attempt is over. */
  close(): Promise<void> {
    return this.flush();
  }
}
