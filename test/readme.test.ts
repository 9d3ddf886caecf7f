import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Workers } from "../src/worker/runner.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { runCli } from "./helpers/cli.js";
import { startTestWorkers } from "./helpers/workers.js";

/** Splits a shell command line into words: double and single quotes, `#` comments; nothing else is needed. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "#" && word === undefined) break;
    if (/\s/.test(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (c === '"' || c === "'") {
      const end = line.indexOf(c, i + 1);
      if (end < 0) throw new Error(`unbalanced quote in: ${line}`);
      word = (word ?? "") + line.slice(i + 1, end);
      i = end;
    } else word = (word ?? "") + c;
  }
  if (word !== undefined) words.push(word);
  return words;
}

/** The commands of the README's walk-through block (the sh block after its marker comment). */
async function walkThrough(): Promise<string[][]> {
  const readme = await readFile(path.resolve("README.md"), "utf8");
  const marker = readme.indexOf("<!-- walk-through:");
  expect(marker, "the README marks its walk-through").toBeGreaterThan(0);
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(marker))![1]!;
  return block.split("\n").map(shellWords).filter((words) => words.length > 0);
}

let api: TestApi;
let workers: Workers;
let outbox: string;
beforeAll(async () => {
  outbox = await mkdtemp(path.join(os.tmpdir(), "readme-outbox-"));
  api = await startTestApi({ config: { outboxDir: outbox } });
  workers = await startTestWorkers(api.database, { outboxDir: outbox });
});
afterAll(async () => {
  await workers?.stop();
  await api?.close();
  await rm(outbox, { recursive: true, force: true });
});

describe("the README's CLI walk-through", () => {
  it("runs as written, every command succeeding, against a fresh server", async () => {
    const commands = await walkThrough();
    expect(commands.length).toBeGreaterThan(10);
    for (const words of commands) {
      expect(words[0]).toBe("task-cli");
      const res = await runCli(["--address", api.server.url, ...words.slice(1)]);
      // stderr may carry progress (end2end without a terminal), never an error.
      expect({ command: words.join(" "), code: res.code, error: /error/i.test(res.stderr) ? res.stderr : "" }).toEqual({ command: words.join(" "), code: 0, error: "" });
    }
    // The ids the README names are the tasks it created.
    const { tasks } = await api.client.listTasks({ ids: [1n, 2n, 3n, 4n] });
    expect(tasks.map((t) => [t.id, t.name]).sort()).toEqual([[1n, "hello"], [2n, "mail"], [3n, "q"], [4n, "later"]]);
  }, 180_000);
});
