import { StringDecoder } from "node:string_decoder";
import type { Readable } from "node:stream";

/** Longest line kept whole; longer ones are cut into pieces this long. */
export const MAX_LINE_CHARS = 8_192;
/** Appended to each piece of a line that was cut. */
export const CUT_MARKER = " [line continues]";

/**
 * Splits a byte stream into lines (LF or CRLF) without ever holding more than `maxChars` of one
 * line: a longer line is emitted in pieces as it arrives, each but the last ending in CUT_MARKER.
 * readline would buffer a line until its newline, so 600 MB without one ended the process with
 * "Invalid string length". UTF-8 sequences split across chunks are decoded whole.
 */
export function readLines(input: Readable, onLine: (line: string) => void, maxChars = MAX_LINE_CHARS): void {
  const decoder = new StringDecoder("utf8");
  let pending = "";
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
      onLine(pending.slice(0, maxChars) + CUT_MARKER);
      pending = pending.slice(maxChars);
    }
  };
  const emitCut = (line: string) => {
    while (line.length > maxChars) {
      onLine(line.slice(0, maxChars) + CUT_MARKER);
      line = line.slice(maxChars);
    }
    onLine(line);
  };
  input.on("data", (chunk: Buffer) => push(decoder.write(chunk)));
  input.on("end", () => {
    push(decoder.end());
    if (pending.length > 0) onLine(pending);
    pending = "";
  });
}
