import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import { InvalidArgumentError, TaskNotFoundError } from "../errors.js";
import {
  GetTaskLogsResponseSchema,
  TaskLogLineSchema,
  WatchTaskResponseSchema,
  type GetTaskLogsRequest,
  type GetTaskLogsResponse,
  type WatchTaskRequest,
  type WatchTaskResponse,
} from "../gen/task/v1/task_pb.js";
import { terminalStatuses, type Database } from "../store/schema.js";
import { listTaskHistory } from "../store/task-history.js";
import { listLogLines, type StoredLogLine } from "../store/task-logs.js";
import { findTask } from "../store/tasks.js";
import { historyToProto, taskToProto } from "./convert.js";
import type { TaskEvents } from "./task-events.js";
import { validateTaskId } from "./validate.js";

const DEFAULT_LOG_LIMIT = 1000;
const MAX_LOG_LIMIT = 5000;
/** Watchers re-check this often even without a notification (missed while reconnecting, say). */
const WATCH_FALLBACK_POLL_MS = 2_000;

function lineToProto(line: StoredLogLine) {
  return create(TaskLogLineSchema, { ...line, createdAt: timestampFromDate(line.created_at) });
}

/** GetTaskLogs: one page of a task's output. */
export async function getTaskLogs(db: Kysely<Database>, req: GetTaskLogsRequest): Promise<GetTaskLogsResponse> {
  const id = validateTaskId(req.id);
  if (req.afterSeq < 0) throw InvalidArgumentError.of("after_seq", "must be 0 or more");
  if (req.limit < 0 || req.limit > MAX_LOG_LIMIT) throw InvalidArgumentError.of("limit", `must be between 1 and ${MAX_LOG_LIMIT} (0 for ${DEFAULT_LOG_LIMIT})`);
  const limit = req.limit || DEFAULT_LOG_LIMIT;
  const lines = await listLogLines(db, id, req.afterSeq, limit + 1);
  if (lines.length === 0 && !(await findTask(db, id))) throw new TaskNotFoundError(id);
  const page = lines.slice(0, limit);
  return create(GetTaskLogsResponseSchema, {
    lines: page.map(lineToProto),
    lastSeq: page.at(-1)?.seq ?? req.afterSeq,
    more: lines.length > limit,
  });
}

/**
 * WatchTask: the task, its history so far and (optionally) its output, then every change as it
 * happens (woken by NOTIFY, re-checked every couple of seconds regardless), until the task is
 * terminal and everything it wrote has been sent.
 */
export async function* watchTask(db: Kysely<Database>, events: TaskEvents, req: WatchTaskRequest, ctx: HandlerContext): AsyncIterable<WatchTaskResponse> {
  const id = validateTaskId(req.id);
  let lastHistoryId = "0";
  let lastSeq = 0;
  let lastUpdated = 0;
  let lastHistoryStatus: string | undefined;
  const unsubscribe = await events.subscribe(id);
  try {
    yield* follow();
  } finally {
    await unsubscribe();
  }

  async function* follow(): AsyncIterable<WatchTaskResponse> {
    while (!ctx.signal.aborted) {
      // Subscribe before reading, so a change between the reads and the wait is not missed.
      const changed = events.wait(id, WATCH_FALLBACK_POLL_MS, ctx.signal);
      const task = await findTask(db, id);
      if (!task) throw new TaskNotFoundError(id);
      const history = await listTaskHistory(db, id, lastHistoryId);
      const lines = req.includeLogs ? await listLogLines(db, id, lastSeq, DEFAULT_LOG_LIMIT) : [];
      if (task.updated_at.getTime() !== lastUpdated) {
        lastUpdated = task.updated_at.getTime();
        yield create(WatchTaskResponseSchema, { event: { case: "task", value: taskToProto(task) } });
      }
      // Interleave history and output in the order they were stored (output first on a tie: it is
      // flushed before the outcome is recorded).
      let h = 0;
      let l = 0;
      while (h < history.length || l < lines.length) {
        const row = history[h];
        const line = lines[l];
        if (line && (!row || line.created_at.getTime() <= row.created_at.getTime())) {
          lastSeq = line.seq;
          l++;
          yield create(WatchTaskResponseSchema, { event: { case: "log", value: lineToProto(line) } });
        } else if (row) {
          lastHistoryId = row.id;
          lastHistoryStatus = row.status;
          h++;
          yield create(WatchTaskResponseSchema, { event: { case: "history", value: historyToProto(row) } });
        }
      }
      if (lines.length === DEFAULT_LOG_LIMIT) continue;
      // Output is stored before the outcome is recorded, so once the terminal history row is sent
      // there is nothing more to come.
      if (terminalStatuses.includes(task.status) && lastHistoryStatus === task.status) return;
      await changed;
    }
  }
}
