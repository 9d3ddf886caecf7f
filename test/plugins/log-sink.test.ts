import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskLogSink } from "../../src/worker/log-sink.js";
import { listLogLines } from "../../src/store/task-logs.js";
import { insertTasks } from "../../src/store/tasks.js";
import { createTestDatabase, type TestDatabase } from "../helpers/database.js";
import { eventually } from "../helpers/plugin-context.js";

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});

afterAll(async () => {
  await database?.drop();
});

/** A new task row (the sink only needs one to reference). */
async function newTaskId(): Promise<string> {
  const [row] = await insertTasks(database.db, [
    { name: "log-sink", type: "noop", parameters: {}, priority: 0, maxAttempts: 3, timeoutMs: 60_000, runAt: null, idempotencyKey: null, requestHash: null },
  ]);
  return row!.id;
}

function open(taskId: string, attempt: number, cap: number): TaskLogSink {
  return new TaskLogSink(database.db.kysely, taskId, attempt, cap, database.logger);
}

async function stored(taskId: string) {
  const lines = await listLogLines(database.db.kysely, taskId, 0, 100_000);
  return lines.map(({ created_at: _, ...line }) => line);
}

describe("TaskLogSink", () => {
  it("past the cap keeps the head and the tail, with one marker saying what was dropped", async () => {
    const taskId = await newTaskId();
    const sink = open(taskId, 1, 6);
    for (let i = 1; i <= 10; i++) sink.write(i % 2 === 0 ? "stderr" : "stdout", `line ${i}`);
    await sink.close();

    expect(await stored(taskId)).toEqual([
      { seq: 1, attempt: 1, stream: "stdout", line: "line 1" },
      { seq: 2, attempt: 1, stream: "stderr", line: "line 2" },
      { seq: 3, attempt: 1, stream: "stdout", line: "line 3" },
      { seq: 4, attempt: 1, stream: "system", line: "[output truncated: 4 lines dropped (lines 4-7); kept the first 3 and the last 3 lines of attempt 1]" },
      { seq: 8, attempt: 1, stream: "stderr", line: "line 8" },
      { seq: 9, attempt: 1, stream: "stdout", line: "line 9" },
      { seq: 10, attempt: 1, stream: "stderr", line: "line 10" },
    ]);
  });

  it("caps each attempt on its own, numbering after the earlier attempts (dropped lines included)", async () => {
    const taskId = await newTaskId();
    const first = open(taskId, 1, 4);
    for (let i = 1; i <= 8; i++) first.write("stdout", `first ${i}`);
    await first.close();

    const second = open(taskId, 2, 4);
    for (let i = 1; i <= 3; i++) second.write("stdout", `second ${i}`);
    await second.close();

    const lines = await stored(taskId);
    expect(lines.map((l) => [l.seq, l.line])).toEqual([
      [1, "first 1"],
      [2, "first 2"],
      [3, "[output truncated: 4 lines dropped (lines 3-6); kept the first 2 and the last 2 lines of attempt 1]"],
      [7, "first 7"],
      [8, "first 8"],
      [9, "second 1"],
      [10, "second 2"],
      [11, "second 3"],
    ]);

    // An attempt that writes nothing adds nothing.
    const third = open(taskId, 3, 5);
    await third.close();
    expect(await stored(taskId)).toHaveLength(8);
  });

  it("takes raw bytes past the head: counts their lines and keeps the last ones", async () => {
    const taskId = await newTaskId();
    const sink = new TaskLogSink(database.db.kysely, taskId, 1, { maxLines: 4, maxBytes: 1024 * 1024 }, database.logger);
    sink.write("stdout", "h1");
    sink.write("stdout", "h2");
    expect(sink.tailOnly()).toBe(false);
    sink.write("stdout", "t1");
    expect(sink.tailOnly()).toBe(true);
    const raw = Buffer.from(Array.from({ length: 1000 }, (_, i) => `r${i + 1}\n`).join("") + "last\r\nopen");
    const newlines = (b: Buffer) => b.toString().split("\n").length - 1;
    sink.raw("stdout", raw.subarray(0, 777), newlines(raw.subarray(0, 777)));
    sink.raw("stdout", raw.subarray(777), newlines(raw.subarray(777)));
    await sink.close();
    const lines = await stored(taskId);
    expect(lines.map((l) => [l.seq, l.line])).toEqual([
      [1, "h1"],
      [2, "h2"],
      // t1 and r1..r1000 dropped; the last line had no newline and still counts.
      [3, "[output truncated: 1,001 lines dropped (lines 3-1003); kept the first 2 and the last 2 lines of attempt 1]"],
      [1004, "last"],
      [1005, "open"],
    ]);
  });

  it("says when to slow down, and drain() resolves once storing caught up", async () => {
    const taskId = await newTaskId();
    const sink = open(taskId, 1, 100_000);
    let slowAt = 0;
    for (let i = 1; i <= 20_000 && slowAt === 0; i++) if (sink.write("stdout", `n${i}`) === false) slowAt = i;
    expect(slowAt).toBeGreaterThan(0);
    expect(slowAt).toBeLessThanOrEqual(16_000);
    await sink.drain();
    expect(sink.write("stdout", "after drain")).toBe(true);
    await sink.close();
    expect((await stored(taskId)).at(-1)).toMatchObject({ seq: slowAt + 1, line: "after drain" });
  });

  it("numbers a later attempt's lines after the earlier ones", async () => {
    const taskId = await newTaskId();
    const first = open(taskId, 1, 100);
    first.write("stdout", "a");
    first.write("stderr", "b");
    await first.close();

    const second = open(taskId, 2, 100);
    second.write("system", "retrying");
    second.write("stdout", "c");
    await second.close();

    expect(await stored(taskId)).toEqual([
      { seq: 1, attempt: 1, stream: "stdout", line: "a" },
      { seq: 2, attempt: 1, stream: "stderr", line: "b" },
      { seq: 3, attempt: 2, stream: "system", line: "retrying" },
      { seq: 4, attempt: 2, stream: "stdout", line: "c" },
    ]);
  });

  it("stores lines while the attempt is still running", async () => {
    const taskId = await newTaskId();
    const sink = open(taskId, 1, 100);
    sink.write("stdout", "progress 10%");

    await eventually(async () => (await stored(taskId)).length === 1, "the line to be flushed without close()");
    await sink.close();
    expect(await stored(taskId)).toEqual([{ seq: 1, attempt: 1, stream: "stdout", line: "progress 10%" }]);
  });

  it("keeps order across many batches", async () => {
    const taskId = await newTaskId();
    const sink = open(taskId, 1, 10_000);
    for (let i = 1; i <= 1_234; i++) sink.write("stdout", `n${i}`);
    await sink.close();

    const lines = await stored(taskId);
    expect(lines).toHaveLength(1_234);
    expect(lines.every((l, i) => l.seq === i + 1 && l.line === `n${i + 1}`)).toBe(true);
  });

  it("shortens a very long line", async () => {
    const taskId = await newTaskId();
    const sink = open(taskId, 1, 100);
    sink.write("stdout", "x".repeat(20_000));
    await sink.close();

    const [line] = await stored(taskId);
    expect(line!.line).toBe(`${"x".repeat(8_192)}…`);
  });

  it("does not fail the attempt when the lines cannot be stored", async () => {
    const missingTask = "999999999";
    const sink = open(missingTask, 1, 100);
    sink.write("stdout", "goes nowhere");
    await expect(sink.close()).resolves.toBeUndefined();
    expect(await stored(missingTask)).toEqual([]);
  });
});
