import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { CUT_MARKER, MAX_LINE_CHARS, readLines } from "../../src/plugins/line-reader.js";
import { shellPlugin } from "../../src/plugins/shell.js";
import { pluginContext } from "../helpers/plugin-context.js";

function linesOf(chunks: (string | Buffer)[], maxChars?: number): Promise<string[]> {
  const input = new PassThrough();
  const lines: string[] = [];
  return new Promise((resolve) => {
    readLines(input, (l) => lines.push(l), maxChars);
    input.on("end", () => setImmediate(() => resolve(lines)));
    for (const c of chunks) input.write(c);
    input.end();
  });
}

describe("readLines", () => {
  it("splits LF and CRLF lines across chunks and keeps a last line without newline", async () => {
    expect(await linesOf(["a\r", "\nb", "c\n\nd"])).toEqual(["a", "bc", "", "d"]);
  });

  it("decodes a UTF-8 character split between chunks", async () => {
    const euro = Buffer.from("€\n");
    expect(await linesOf([euro.subarray(0, 1), euro.subarray(1)])).toEqual(["€"]);
  });

  it("cuts a long line into marked pieces as it arrives", async () => {
    expect(await linesOf(["abcdefghij", "klm\nfour\n"], 4)).toEqual([
      `abcd${CUT_MARKER}`,
      `efgh${CUT_MARKER}`,
      `ijkl${CUT_MARKER}`,
      "m",
      "four",
    ]);
  });
});

describe("shell output without newlines", () => {
  it("600 MB on one line is cut while reading instead of ending the process", async () => {
    const shell = shellPlugin({ enabled: true, killGraceMs: 500 });
    const ctx = pluginContext();
    // Count the pieces rather than keep 600 MB of them in the test.
    let pieces = 0;
    let longest = 0;
    let last = "";
    ctx.output = {
      write(_stream, line) {
        pieces++;
        longest = Math.max(longest, line.length);
        last = line;
      },
    };
    const result = await shell.run(shell.parameters.parse({ command: "head -c 600M /dev/zero | tr '\\0' x; echo; echo done" }), ctx);
    expect(result).toMatchObject({ exit_code: 0 });
    expect(pieces).toBe(Math.ceil((600 * 1024 * 1024) / MAX_LINE_CHARS) + 1);
    expect(longest).toBe(MAX_LINE_CHARS + CUT_MARKER.length);
    expect(last).toBe("done");
  });
});
