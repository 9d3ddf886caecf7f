/**
 * One attempt's output lines on an agent until the control plane has stored them (issue 26 item
 * 8): in memory up to a cap, past it on disk (`lines-<task>-<attempt>.jsonl` in the agent's spool),
 * so a long cut neither grows the agent's memory nor loses a line. Every line carries its number
 * within the attempt: a batch says where it starts (AppendLogs first_line), so a batch sent again
 * after a lost answer is stored once, and lines arrive in order.
 *
 * Order: the memory head, then the file, then the tail that waits to be appended to the file. Once
 * the head is full, new lines go to the tail (then the file) until both are sent, then to memory again.
 */
import { appendFileSync, closeSync, openSync, readSync, rmSync } from "node:fs";
import path from "node:path";

/** One buffered line. */
export interface BufferedLine {
  /** Its number within the attempt, from 0. */
  n: number;
  stream: "stdout" | "stderr" | "system";
  line: string;
}

/** Lines of one attempt kept in memory before the rest goes to disk. */
export const MEMORY_LINES = 10_000;
/** The tail is appended to the file when it reaches this (and at every take). */
const TAIL_LINES = 1_000;
/** Bytes read from the file per take. */
const READ_BYTES = 1024 * 1024;

/** See the module comment. */
export class OutputBuffer {
  private head: BufferedLine[] = [];
  private tail: BufferedLine[] = [];
  /** Lines written to the file and not yet taken, and where the next read starts. */
  private onDisk = 0;
  private readAt = 0;
  /** The number the next line gets. */
  private next = 0;
  private readonly file: string;

  constructor(
    dir: string,
    taskId: bigint,
    attempt: number,
    private readonly memoryLines = MEMORY_LINES,
  ) {
    this.file = path.join(dir, `lines-${taskId}-${attempt}.jsonl`);
  }

  /** Lines waiting to be sent. */
  get size(): number {
    return this.head.length + this.onDisk + this.tail.length;
  }

  /** Whether lines past the memory cap went to disk (for tests and logs). */
  get spilled(): boolean {
    return this.onDisk + this.tail.length > 0;
  }

  /** Adds the attempt's next line. */
  add(stream: BufferedLine["stream"], line: string): void {
    const entry = { n: this.next++, stream, line };
    if (!this.spilled && this.head.length < this.memoryLines) this.head.push(entry);
    else {
      this.tail.push(entry);
      if (this.tail.length >= TAIL_LINES) this.spill();
    }
  }

  /**
   * Up to `max` lines, in order, removed from the buffer: the caller gives them back with
   * giveBack() if they could not be sent.
   */
  take(max: number): BufferedLine[] {
    if (this.head.length > 0) return this.head.splice(0, max);
    this.spill();
    if (this.onDisk === 0) return [];
    const fd = openSync(this.file, "r");
    try {
      const chunk = Buffer.alloc(READ_BYTES);
      const read = readSync(fd, chunk, 0, READ_BYTES, this.readAt);
      const text = chunk.subarray(0, read).toString("utf8");
      const out: BufferedLine[] = [];
      let at = 0;
      while (out.length < max) {
        const end = text.indexOf("\n", at);
        // A line longer than the chunk: read it whole.
        if (end === -1) {
          if (out.length > 0) break;
          return [this.readLong(fd)];
        }
        out.push(JSON.parse(text.slice(at, end)) as BufferedLine);
        at = end + 1;
      }
      this.readAt += Buffer.byteLength(text.slice(0, at));
      this.onDisk -= out.length;
      if (this.onDisk === 0) this.reset();
      return out;
    } finally {
      closeSync(fd);
    }
  }

  /** Lines take() returned that could not be sent: back in front, in order. */
  giveBack(lines: BufferedLine[]): void {
    this.head.unshift(...lines);
  }

  /** Forgets everything (the attempt is over and its lines are no longer wanted) and removes the file. */
  discard(): void {
    this.head = [];
    this.tail = [];
    this.reset();
  }

  private spill(): void {
    if (this.tail.length === 0) return;
    appendFileSync(this.file, this.tail.map((l) => `${JSON.stringify(l)}\n`).join(""), { mode: 0o600 });
    this.onDisk += this.tail.length;
    this.tail = [];
  }

  private readLong(fd: number): BufferedLine {
    let size = READ_BYTES * 2;
    for (;;) {
      const chunk = Buffer.alloc(size);
      const read = readSync(fd, chunk, 0, size, this.readAt);
      const end = chunk.subarray(0, read).indexOf(10);
      if (end !== -1) {
        const line = JSON.parse(chunk.subarray(0, end).toString("utf8")) as BufferedLine;
        this.readAt += end + 1;
        this.onDisk--;
        if (this.onDisk === 0) this.reset();
        return line;
      }
      size *= 2;
    }
  }

  private reset(): void {
    this.onDisk = 0;
    this.readAt = 0;
    rmSync(this.file, { force: true });
  }
}
