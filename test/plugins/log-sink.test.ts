import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskLogSink } from "../../src/queue/log-sink.js";
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
  const lines = await listLogLines(database.db.kysely, taskId, 0, 10_000);
  return lines.map(({ created_at: _, ...line }) => line);
}

describe("TaskLogSink", () => {
  it("keeps the first `cap` lines in order, then one truncation marker", async () => {
    const taskId = await newTaskId();
    const sink = open(taskId, 1, 5);
    for (let i = 1; i <= 8; i++) sink.write(i % 2 === 0 ? "stderr" : "stdout", `line ${i}`);
    await sink.close();

    expect(await stored(taskId)).toEqual([
      { seq: 1, attempt: 1, stream: "stdout", line: "line 1" },
      { seq: 2, attempt: 1, stream: "stderr", line: "line 2" },
      { seq: 3, attempt: 1, stream: "stdout", line: "line 3" },
      { seq: 4, attempt: 1, stream: "stderr", line: "line 4" },
      { seq: 5, attempt: 1, stream: "stdout", line: "line 5" },
      { seq: 6, attempt: 1, stream: "system", line: "[output truncated: more than 5 lines]" },
    ]);
  });

  it("past the cap, a later attempt adds nothing: one marker per task", async () => {
    const taskId = await newTaskId();
    const first = open(taskId, 1, 5);
    for (let i = 1; i <= 8; i++) first.write("stdout", `first ${i}`);
    await first.close();

    const second = open(taskId, 2, 5);
    for (let i = 1; i <= 4; i++) second.write("stdout", `second ${i}`);
    await second.close();

    const lines = await stored(taskId);
    expect(lines).toHaveLength(6);
    expect(lines.filter((l) => l.line.startsWith("second"))).toEqual([]);
    expect(lines.filter((l) => l.stream === "system")).toEqual([
      { seq: 6, attempt: 1, stream: "system", line: "[output truncated: more than 5 lines]" },
    ]);

    // An attempt that writes nothing adds nothing.
    const third = open(taskId, 3, 5);
    await third.close();
    expect(await stored(taskId)).toHaveLength(6);
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
