import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskStatus } from "../src/gen/task/v1/task_pb.js";
import { TaskLogSink } from "../src/worker/log-sink.js";
import { listLogLines } from "../src/store/task-logs.js";
import { startTestApiWithWorkers, type TestApiWithWorkers } from "./helpers/api.js";
import { createTask } from "./helpers/factory.js";
import { waitFor } from "./helpers/wait.js";

let api: TestApiWithWorkers;
beforeAll(async () => {
  api = await startTestApiWithWorkers();
});
afterAll(() => api?.close());

describe("task output is stored, never dropped silently", () => {
  it("a NUL byte in a line is stored as ␀ and the lines around it are kept", async () => {
    const task = await createTask(api.client, { type: "shell", parameters: { command: 'echo before; printf "a\\0b\\n"; echo after' } });
    const done = await waitFor(async () => {
      const { task: t } = await api.client.getTask({ id: task.id });
      return t?.status === TaskStatus.SUCCEEDED && t;
    }, "the shell task to succeed");
    expect(done.result).toMatchObject({ stdout_lines: 3 });
    const { lines } = await api.client.getTaskLogs({ id: task.id });
    expect(lines.map((l) => l.line)).toEqual(["before", "a\u2400b", "after"]);
  });

  it("a batch the database refuses leaves a marker in the task's output", async () => {
    const task = await createTask(api.client, { runAt: timestampFromDate(new Date(Date.now() + 3_600_000)) });
    const sink = new TaskLogSink(api.database.db.kysely, String(task.id), 1, 100, api.database.logger);
    // A stream name the table's check constraint rejects fails the whole batch.
    sink.write("bogus" as never, "x");
    sink.write("stdout", "y");
    await sink.close();
    const stored = await listLogLines(api.database.db.kysely, String(task.id));
    expect(stored.map((l) => [l.stream, l.line])).toEqual([["system", expect.stringMatching(/^\[2 output lines lost: .*check constraint/)]]);
  });
});
