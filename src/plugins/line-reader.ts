import { StringDecoder } from "node:string_decoder";
import type { Readable } from "node:stream";

/** Longest line kept whole; longer ones are cut into pieces this long. */
export const MAX_LINE_CHARS = 8_192;
/** Appended to each piece of a line that was cut. */
export const CUT_MARKER = " [line continues]";

/** Where a reader's lines go, with backpressure (see CaptureSink in types.ts). */
export interface LineTarget {
  /** Returns false to pause reading until drain() resolves. */
  line(line: string): boolean | void;
  drain?(): Promise<void>;
  /** When true (checked per chunk), raw() takes whole chunks instead of lines. */
  tailOnly?(): boolean;
  raw?(chunk: Buffer, newlines: number): void;
}

/** What a reader saw: lines (a raw chunk counts its newlines) and the last complete line. */
export interface ReadStats {
  lines: number;
  lastLine(): string;
}

function countNewlines(chunk: Buffer): number {
  let n = 0;
  for (let i = 0; i < chunk.length; i++) if (chunk[i] === 10) n++;
  return n;
}

/** The last non-empty line in a chunk of raw output (at most maxChars of it). */
function lastLineOf(chunk: Buffer, maxChars: number): string {
  let end = chunk.length;
  while (end > 0 && (chunk[end - 1] === 10 || chunk[end - 1] === 13)) end--;
  const start = Math.max(chunk.lastIndexOf(10, end - 1) + 1, end - maxChars * 4);
  return chunk.subarray(start, end).toString("utf8").slice(-maxChars);
}

/**
 * Splits a byte stream into lines (LF or CRLF) without ever holding more than `maxChars` of one
 * line: a longer line is emitted in pieces as it arrives, each but the last ending in CUT_MARKER.
 * readline would buffer a line until its newline, so 600 MB without one ended the process with
 * "Invalid string length". UTF-8 sequences split across chunks are decoded whole.
 *
 * With a LineTarget: when line() returns false the stream is paused until drain() resolves (a
 * pipe then fills and the writer blocks: backpressure instead of an unbounded buffer), and once
 * tailOnly() says only a tail will be kept, chunks go to raw() with their newline count, so lines
 * past a cap cost a byte loop, not a string each.
 */
export function readLines(input: Readable, onLine: ((line: string) => void) | LineTarget, maxChars = MAX_LINE_CHARS): ReadStats {
  const target: LineTarget = typeof onLine === "function" ? { line: onLine } : onLine;
  const decoder = new StringDecoder("utf8");
  let pending = "";
  let last = "";
  let rawTail: Buffer | undefined;
  let slow = false;
  const stats: ReadStats = {
    lines: 0,
    lastLine: () => (rawTail ? lastLineOf(rawTail, maxChars) || last : last),
  };
  const emit = (line: string) => {
    stats.lines++;
    if (line.length > 0) last = line;
    if (target.line(line) === false) slow = true;
  };
  const push = (text: string) => {
    let start = 0;
    for (;;) {
      const nl = text.indexOf("\n", start);
      if (nl === -1) break;
      let line = pending + text.slice(start, nl);
      pending = "";
      if (line.endsWith("\r")) line = line.slice(0, -1);
      emitCut(line);
      start = nl + 1;
    }
    pending += text.slice(start);
    // Cut while reading: what is held never grows past one piece.
    while (pending.length > maxChars) {
      emit(pending.slice(0, maxChars) + CUT_MARKER);
      pending = pending.slice(maxChars);
    }
  };
  const emitCut = (line: string) => {
    while (line.length > maxChars) {
      emit(line.slice(0, maxChars) + CUT_MARKER);
      line = line.slice(maxChars);
    }
    emit(line);
  };
  input.on("data", (chunk: Buffer) => {
    if (target.raw && target.tailOnly?.()) {
      if (!rawTail) {
        // What was held of a line goes ahead of the raw bytes, so the line stays whole.
        const held = pending + decoder.end();
        pending = "";
        if (held.length > 0) target.raw(Buffer.from(held, "utf8"), 0);
      }
      const newlines = countNewlines(chunk);
      stats.lines += newlines;
      rawTail = chunk;
      target.raw(chunk, newlines);
      return;
    }
    push(decoder.write(chunk));
    if (slow && target.drain) {
      slow = false;
      input.pause();
      void target.drain().then(() => input.resume());
    }
  });
  input.on("end", () => {
    if (rawTail) {
      // A last line without a newline still counts.
      if (rawTail.length > 0 && rawTail[rawTail.length - 1] !== 10) stats.lines++;
      return;
    }
    push(decoder.end());
    if (pending.length > 0) emit(pending);
    pending = "";
  });
  return stats;
}
