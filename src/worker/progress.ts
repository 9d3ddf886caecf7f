import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Db } from "../store/db.js";
import { GroupCommit } from "../store/group-commit.js";
import { MAX_PROGRESS_MESSAGE, saveProgress, type ProgressWrite } from "../store/task-progress.js";

/** At most one progress write per task per this interval, whatever the plugin sends. */
export const PROGRESS_INTERVAL_MS = 1_000;

/**
 * A worker process's progress writes: the reports of all its attempts that are due at once go in
 * one statement (group commit), so the last reports of many short attempts ending together cost
 * one round trip, not one each.
 */
export class ProgressWriter {
  private readonly batches: GroupCommit<ProgressWrite, void>;

  constructor(db: Db) {
    this.batches = new GroupCommit(async (writes) => (await saveProgress(db.kysely, writes), writes.map(() => undefined)), { maxBatch: 500, maxInFlight: 1 });
  }

  /** Stores one report with the next batch. */
  write(report: ProgressWrite): Promise<void> {
    return this.batches.write(report);
  }
}

/**
 * The progress of one attempt, throttled: at most one write per `intervalMs`, counted from the
 * attempt's start (the latest report wins; those in between are dropped), and close() writes the
 * last one that is still pending, so the final value always lands when the attempt ends. An attempt
 * shorter than the interval thus writes once, at its end, however often it reports. A write that
 * fails is logged and dropped: progress never fails an attempt.
 */
export class AttemptProgress {
  private pending: { fraction: number; message: string } | undefined;
  /** The attempt's start counts as a write: the first one waits out the interval too. */
  private lastWriteAt = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private closed = false;
  /** Rows written (for tests and the benchmark). */
  writes = 0;

  constructor(
    private readonly writer: ProgressWriter,
    private readonly taskId: string,
    private readonly attempt: number,
    private readonly logger: Logger,
    private readonly intervalMs = PROGRESS_INTERVAL_MS,
  ) {}

  /** ctx.progress: `fraction` from 0 to 1 (clamped), `message` optional (cut to 500 characters). */
  report(fraction: number, message = ""): void {
    if (typeof fraction !== "number" || !Number.isFinite(fraction)) throw new TypeError(`progress: fraction must be a number from 0 to 1, got ${String(fraction)}`);
    if (this.closed) return;
    this.pending = { fraction: Math.min(1, Math.max(0, fraction)), message: String(message).slice(0, MAX_PROGRESS_MESSAGE) };
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.writing) return; // the pending value goes with the next write
    const wait = this.lastWriteAt + this.intervalMs - Date.now();
    if (wait <= 0) void this.flush();
    else this.timer = setTimeout(() => void this.flush(), wait);
  }

  private flush(): Promise<void> {
    this.timer = undefined;
    const value = this.pending;
    if (!value) return Promise.resolve();
    this.pending = undefined;
    this.lastWriteAt = Date.now();
    this.writes++;
    this.writing = this.writer
      .write({ taskId: this.taskId, attempt: this.attempt, fraction: value.fraction, message: value.message })
      .catch((err: unknown) => this.logger.warn({ err: errorMessage(err) }, "could not store the task's progress"))
      .finally(() => {
        this.writing = undefined;
        if (this.pending && !this.closed) this.schedule();
      });
    return this.writing;
  }

  /** The attempt ended: writes the last pending report now (once the one in flight is done). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.writing;
    await this.flush();
  }
}
