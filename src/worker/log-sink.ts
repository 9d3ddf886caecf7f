import { StringDecoder } from "node:string_decoder";
import type { Kysely } from "kysely";
import type { Logger } from "../logger.js";
import { MAX_LINE_CHARS } from "../plugins/line-reader.js";
import type { CaptureSink } from "../plugins/types.js";
import type { Database } from "../store/schema.js";
import { insertLogChunks, lastLogSeq, NUL_REPLACEMENT, replaceLogTail, type LogChunk, type LogLine } from "../store/task-logs.js";
import { storableText } from "../store/storable-text.js";

/** How much output one attempt keeps: its head and its tail, each half of both bounds. */
export interface CaptureLimits {
  /** Lines kept per attempt (TASK_MAX_LOG_LINES). */
  maxLines: number;
  /** Bytes kept per attempt (TASK_MAX_LOG_BYTES). */
  maxBytes: number;
}

export const DEFAULT_MAX_LOG_BYTES = 16 * 1024 * 1024;

const FLUSH_INTERVAL_MS = 250;
/** A chunk (one task_logs row) holds at most this many lines / bytes. */
const CHUNK_LINES = 1_000;
const CHUNK_BYTES = 256 * 1024;
/** Past this much output waiting to be stored, write() says "slow down" (false). */
const HIGH_WATER_LINES = 16 * CHUNK_LINES;
const HIGH_WATER_BYTES = 16 * CHUNK_BYTES;
/** How often the kept tail of a capped attempt is rewritten while it runs. */
const TAIL_CHECKPOINT_MS = 2_000;
/** What a line cut past the cap ends with (past the cap a line counts once however long). */
export const TAIL_CUT_MARKER = " [line cut]";
/** The largest line number task_logs can hold (int4). */
const MAX_SEQ = 2_147_483_647;

type Stream = LogLine["stream"];
type Line = Pick<LogLine, "stream" | "line">;
/** What the tail keeps: whole lines, or raw bytes holding `n` newlines (read past the cap). */
type TailEntry = { stream: Stream; line: string; n: 1; bytes: number } | { stream: Stream; raw: Buffer; n: number; bytes: number };

/** NUL shows as ␀ (a reader sees one was there); lone surrogates become U+FFFD. */
function clean(line: string): string {
  return storableText(line.replaceAll("\0", NUL_REPLACEMENT));
}

function chunked(firstSeq: number, attempt: number, lines: Line[]): LogChunk[] {
  const chunks: LogChunk[] = [];
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < lines.length; i++) {
    bytes += lines[i]!.line.length;
    if (i + 1 - start >= CHUNK_LINES || bytes >= CHUNK_BYTES || i === lines.length - 1) {
      chunks.push({ firstSeq: firstSeq + start, attempt, lines: lines.slice(start, i + 1) });
      start = i + 1;
      bytes = 0;
    }
  }
  return chunks;
}

/**
 * Captures one attempt's output into task_logs, in chunks of up to 1,000 lines (one row each),
 * numbered after what earlier attempts stored. It keeps the attempt's head (the first half of the
 * line and byte limits) as it is written, and past that only a tail (the last half) in memory,
 * which it rewrites in storage every couple of seconds and at the end, behind one marker line
 * saying how many lines were dropped and which. So lines past the cap cost a counter (readers
 * hand them as raw bytes, see `raw`), the head is live for followers, and memory stays bounded.
 *
 * Backpressure: write() returns false while more than a few chunks wait to be stored; a reader
 * then waits for drain() (the shell plugin pauses the pipe, so the command slows down). An
 * attempt that prints nothing costs no database work. Storage failures are logged and noted in
 * the output, never fatal to the task: output is a convenience, the outcome is what must be
 * recorded.
 */
export class TaskLogSink implements CaptureSink {
  private readonly limits: { headLines: number; headBytes: number; tailLines: number; tailBytes: number };
  private base: number | undefined;
  private buffer: Line[] = [];
  private bufferBytes = 0;
  /** Lines (and bytes) accepted into the head, stored or not yet. */
  private headLines = 0;
  private headBytes = 0;
  private headFull = false;
  /** Lines of the head handed to storage so far. */
  private headQueued = 0;
  private pendingLines = 0;
  private pendingBytes = 0;
  private waiters: (() => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private flushing = false;
  private tail: TailEntry[] = [];
  private tailStart = 0;
  private tailKeptLines = 0;
  private tailKeptBytes = 0;
  /** Complete lines past the head (kept or dropped). */
  private tailLines = 0;
  private tailDirty = false;
  private tailTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly taskId: string,
    private readonly attempt: number,
    limits: CaptureLimits | number,
    private readonly logger: Logger,
  ) {
    const { maxLines, maxBytes } = typeof limits === "number" ? { maxLines: limits, maxBytes: DEFAULT_MAX_LOG_BYTES } : limits;
    const headLines = Math.ceil(maxLines / 2);
    const headBytes = Math.ceil(maxBytes / 2);
    this.limits = { headLines, headBytes, tailLines: Math.max(1, maxLines - headLines), tailBytes: Math.max(MAX_LINE_CHARS * 4, maxBytes - headBytes) };
  }

  write(stream: Stream, line: string): boolean {
    if (this.closed) return true;
    const text = clean(line.length > MAX_LINE_CHARS ? `${line.slice(0, MAX_LINE_CHARS)}…` : line);
    if (!this.headFull) {
      if (this.headLines < this.limits.headLines && this.headBytes + text.length <= this.limits.headBytes) {
        this.headLines++;
        this.headBytes += text.length;
        this.buffer.push({ stream, line: text });
        this.bufferBytes += text.length;
        this.pendingLines++;
        this.pendingBytes += text.length;
        if (this.buffer.length >= CHUNK_LINES || this.bufferBytes >= CHUNK_BYTES) this.flush();
        else this.timer ??= setTimeout(() => this.flush(), FLUSH_INTERVAL_MS);
        return this.writable();
      }
      this.headFull = true;
      this.flush();
    }
    this.tailLines++;
    this.pushTail({ stream, line: text, n: 1, bytes: text.length });
    return true;
  }

  /** Whether everything written now only feeds the tail (the head is full): readers may hand raw bytes. */
  tailOnly(): boolean {
    return this.headFull;
  }

  /** Output past the head as raw bytes with `newlines` line ends in them: counted, kept if recent. */
  raw(stream: Stream, chunk: Buffer, newlines: number): void {
    if (this.closed) return;
    this.headFull = true;
    this.tailLines += newlines;
    this.pushTail({ stream, raw: chunk, n: newlines, bytes: chunk.length });
  }

  /** Resolves once the output waiting to be stored is back under the high-water mark. */
  drain(): Promise<void> {
    if (this.writable()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private writable(): boolean {
    return this.pendingLines < HIGH_WATER_LINES && this.pendingBytes < HIGH_WATER_BYTES;
  }

  private pushTail(entry: TailEntry): void {
    this.tail.push(entry);
    this.tailKeptLines += entry.n;
    this.tailKeptBytes += entry.bytes;
    // Drop the oldest entries while what is left still covers the tail that will be kept.
    while (this.tail.length - this.tailStart > 1) {
      const first = this.tail[this.tailStart]!;
      if (this.tailKeptLines - first.n <= this.limits.tailLines && this.tailKeptBytes - first.bytes < this.limits.tailBytes) break;
      this.tailKeptLines -= first.n;
      this.tailKeptBytes -= first.bytes;
      this.tail[this.tailStart++] = undefined as unknown as TailEntry;
    }
    if (this.tailStart > 1024) {
      this.tail = this.tail.slice(this.tailStart);
      this.tailStart = 0;
    }
    this.tailDirty = true;
    if (!this.tailTimer) {
      this.tailTimer = setTimeout(() => {
        this.tailTimer = undefined;
        this.checkpoint(false);
      }, TAIL_CHECKPOINT_MS);
      this.tailTimer.unref();
    }
  }

  /** The kept tail as lines (the last tailLines that fit tailBytes), and how many lines are past the head. */
  private decodeTail(final: boolean): { kept: Line[]; total: number } {
    const decoders = new Map<Stream, StringDecoder>();
    const partial = new Map<Stream, string>();
    const lines: Line[] = [];
    let openLines = 0;
    const push = (stream: Stream, text: string) => {
      const line = text.endsWith("\r") ? text.slice(0, -1) : text;
      lines.push({ stream, line: clean(line.length > MAX_LINE_CHARS ? line.slice(0, MAX_LINE_CHARS) + TAIL_CUT_MARKER : line) });
    };
    for (let i = this.tailStart; i < this.tail.length; i++) {
      const e = this.tail[i]!;
      if ("line" in e) {
        lines.push({ stream: e.stream, line: e.line });
        continue;
      }
      let decoder = decoders.get(e.stream);
      if (!decoder) decoders.set(e.stream, (decoder = new StringDecoder("utf8")));
      const text = (partial.get(e.stream) ?? "") + decoder.write(e.raw);
      let start = 0;
      for (let nl = text.indexOf("\n"); nl !== -1; nl = text.indexOf("\n", start)) {
        push(e.stream, text.slice(start, nl));
        start = nl + 1;
      }
      // Only ever the start of one line: cap what is held.
      partial.set(e.stream, text.slice(start, start + MAX_LINE_CHARS + 1));
    }
    if (final) {
      for (const [stream, decoder] of decoders) {
        const rest = (partial.get(stream) ?? "") + decoder.end();
        if (rest.length > 0) {
          push(stream, rest);
          openLines++;
        }
      }
    }
    const kept: Line[] = [];
    let bytes = 0;
    for (let i = lines.length - 1; i >= 0 && kept.length < this.limits.tailLines; i--) {
      bytes += lines[i]!.line.length;
      if (bytes > this.limits.tailBytes) break;
      kept.push(lines[i]!);
    }
    return { kept: kept.reverse(), total: this.tailLines + openLines };
  }

  private async loadBase(): Promise<number> {
    this.base ??= await lastLogSeq(this.db, this.taskId);
    return this.base;
  }

  private settle(lines: number, bytes: number): void {
    this.pendingLines -= lines;
    this.pendingBytes -= bytes;
    if (!this.writable()) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }

  private flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.flushing || this.buffer.length === 0) return this.chain;
    this.flushing = true;
    // One writer per attempt, chained so chunks are stored in order. Whatever was buffered while
    // a statement ran goes in the next one (several chunks, one round trip): group commit.
    this.chain = this.chain.then(async () => {
      while (this.buffer.length > 0) {
        const batch = this.buffer;
        const bytes = this.bufferBytes;
        this.buffer = [];
        this.bufferBytes = 0;
        const first = this.headQueued + 1;
        this.headQueued += batch.length;
        try {
          const base = await this.loadBase();
          await insertLogChunks(this.db, this.taskId, chunked(base + first, this.attempt, batch));
        } catch (err) {
          await this.noteLoss(first, batch.length, err);
        } finally {
          this.settle(batch.length, bytes);
        }
      }
      this.flushing = false;
    });
    return this.chain;
  }

  /** Say so in the task's own output too (at the first lost line's number), so a reader sees the gap. */
  private async noteLoss(firstSeq: number, count: number, err: unknown): Promise<void> {
    const message = err instanceof Error ? err.message : String(err);
    this.logger.warn({ err: message, lines: count }, "dropped task output lines");
    try {
      const base = await this.loadBase();
      await insertLogChunks(this.db, this.taskId, [
        { firstSeq: base + firstSeq, attempt: this.attempt, lines: [{ stream: "system", line: clean(`[${count} output line${count === 1 ? "" : "s"} lost: ${message}]`) }] },
      ]);
    } catch {
      // The database is away; the outcome path deals with that.
    }
  }

  /** Rewrites the stored marker and tail from what the tail holds now. */
  private checkpoint(final: boolean): Promise<void> {
    if (!this.tailDirty && !final) return this.chain;
    this.chain = this.chain.then(async () => {
      if (!this.tailDirty && (!final || this.tailLines === 0)) return;
      this.tailDirty = false;
      const { kept, total: written } = this.decodeTail(final);
      if (written === 0) return;
      const base = this.base ?? (await this.loadBase().catch(() => 0));
      // Line numbers are int4: past 2^31-1 lines the count saturates (the marker says "at least").
      const total = Math.min(written, MAX_SEQ - base - this.headLines);
      const saturated = total < written;
      const dropped = Math.max(0, total - kept.length);
      try {
        const after = (await this.loadBase()) + this.headLines;
        const chunks: LogChunk[] = [];
        if (dropped > 0) {
          const word = dropped === 1 ? "line" : "lines";
          const range = dropped === 1 ? `line ${after + 1}` : `lines ${after + 1}-${after + dropped}`;
          chunks.push({
            firstSeq: after + 1,
            attempt: this.attempt,
            lines: [
              {
                stream: "system",
                line: `[output truncated: ${saturated ? "at least " : ""}${dropped.toLocaleString("en-US")} ${word} dropped (${range}); kept the first ${this.headLines.toLocaleString("en-US")} and the last ${kept.length.toLocaleString("en-US")} lines of attempt ${this.attempt}]`,
              },
            ],
          });
        }
        chunks.push(...chunked(after + dropped + 1, this.attempt, kept));
        await replaceLogTail(this.db, this.taskId, this.attempt, after, chunks);
      } catch (err) {
        this.tailDirty = true;
        this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, "could not store the tail of the task's output");
      }
    });
    return this.chain;
  }

  /** Stores what is buffered and the final tail; call once the attempt is over. */
  async close(): Promise<void> {
    clearTimeout(this.tailTimer);
    this.tailTimer = undefined;
    this.flush();
    if (this.headFull) this.tailDirty = true;
    await this.checkpoint(true);
    this.closed = true;
    this.tail = [];
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }
}
