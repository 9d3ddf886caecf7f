import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import { TaskNotFoundError } from "../errors.js";
import {
  GetTaskLogsResponseSchema,
  TaskLogLineSchema,
  WatchTaskResponseSchema,
  type GetTaskLogsRequest,
  type GetTaskLogsResponse,
  type WatchTaskRequest,
  type WatchTaskResponse,
} from "../gen/task/v1/task_pb.js";
import type { Database } from "../store/schema.js";
import { isFinished } from "../store/lifecycle/index.js";
import { listTaskHistory } from "../store/task-history.js";
import { countLogLines, listLogLines, readLogRange, readLogTail, type LogFilter, type StoredLogLine } from "../store/task-logs.js";
import { findTask } from "../store/tasks.js";
import { findProgress } from "../store/task-progress.js";
import { historyToProto, taskToProto } from "./convert.js";
import type { TaskEvents } from "./task-events.js";
import { Violations } from "./fields.js";
import { validateTaskId } from "./validate.js";

const DEFAULT_LOG_LIMIT = 1000;
const MAX_LOG_LIMIT = 5000;
/** Watchers re-check this often even without a notification (missed while reconnecting, say). */
const WATCH_FALLBACK_POLL_MS = 2_000;

function lineToProto(line: StoredLogLine) {
  return create(TaskLogLineSchema, { ...line, createdAt: timestampFromDate(line.created_at) });
}

const LOG_STREAMS = ["stdout", "stderr", "system"] as const;
/** The largest line number or attempt a request may name (int32 fields: anything up to it is fine). */
const MAX_INT32 = 2_147_483_647;

/** A checked GetTaskLogs request. */
export interface LogQuery {
  id: string;
  filter: LogFilter;
  limit: number;
  mode: { kind: "after"; afterSeq: number } | { kind: "range"; from: number; to: number } | { kind: "tail"; count: number };
}

/** Checks a GetTaskLogs request: every problem is one InvalidArgument, never a 500. */
export function validateLogQuery(req: GetTaskLogsRequest): LogQuery {
  const id = validateTaskId(req.id);
  const v = new Violations();
  if (req.afterSeq < 0) v.add("after_seq", "must be 0 or more");
  if (req.limit < 0 || req.limit > MAX_LOG_LIMIT) v.add("limit", `must be between 1 and ${MAX_LOG_LIMIT} (0 for ${DEFAULT_LOG_LIMIT})`);
  if (req.from !== undefined && req.from < 1) v.add("from", "must be a line number, 1 or more");
  if (req.to !== undefined && req.to < 1) v.add("to", "must be a line number, 1 or more");
  if (req.from !== undefined && req.to !== undefined && req.from >= 1 && req.to >= 1 && req.from > req.to) v.add("to", `must not be before from (${req.from})`);
  if (req.tail !== undefined && (req.tail < 1 || req.tail > MAX_LOG_LIMIT)) v.add("tail", `must be between 1 and ${MAX_LOG_LIMIT}`);
  const ranged = req.from !== undefined || req.to !== undefined;
  if (req.tail !== undefined && ranged) v.add("tail", "cannot be combined with from/to");
  if (req.afterSeq > 0 && (ranged || req.tail !== undefined)) v.add("after_seq", "cannot be combined with from/to or tail");
  if (req.attempt < 0) v.add("attempt", "must be an attempt number, 1 or more (0 for every attempt)");
  if (req.stream !== "" && !(LOG_STREAMS as readonly string[]).includes(req.stream)) v.add("stream", `must be one of ${LOG_STREAMS.join(", ")} (or empty for all)`);
  v.throwIfAny();
  const filter: LogFilter = { attempt: req.attempt || undefined, stream: (req.stream || undefined) as LogFilter["stream"] };
  const limit = req.limit || DEFAULT_LOG_LIMIT;
  if (req.tail !== undefined) return { id, filter, limit, mode: { kind: "tail", count: req.tail } };
  if (ranged) return { id, filter, limit, mode: { kind: "range", from: req.from ?? 1, to: req.to ?? MAX_INT32 } };
  return { id, filter, limit, mode: { kind: "after", afterSeq: req.afterSeq } };
}

/** GetTaskLogs: a page, a range or the tail of a task's output, with line counts. */
export async function getTaskLogs(db: Kysely<Database>, req: GetTaskLogsRequest): Promise<GetTaskLogsResponse> {
  const q = validateLogQuery(req);
  if (!(await findTask(db, q.id))) throw new TaskNotFoundError(q.id);
  const counts = await countLogLines(db, q.id, q.filter);
  let page: StoredLogLine[];
  let more: boolean;
  if (q.mode.kind === "tail") {
    page = await readLogTail(db, q.id, q.mode.count, q.filter);
    more = false;
  } else {
    const [from, to] = q.mode.kind === "range" ? [q.mode.from, q.mode.to] : [q.mode.afterSeq + 1, MAX_INT32];
    const lines = await readLogRange(db, q.id, from, to, q.limit + 1, q.filter);
    page = lines.slice(0, q.limit);
    more = lines.length > q.limit;
  }
  return create(GetTaskLogsResponseSchema, {
    lines: page.map(lineToProto),
    lastSeq: page.at(-1)?.seq ?? (q.mode.kind === "after" ? q.mode.afterSeq : 0),
    more,
    totalLines: counts.lastSeq,
    storedLines: counts.stored,
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
      const progress = (await findProgress(db, [id])).get(id);
      // A new task message when the task row or its progress changed.
      const updated = Math.max(task.updated_at.getTime(), progress?.updated_at.getTime() ?? 0);
      if (updated !== lastUpdated) {
        lastUpdated = updated;
        yield create(WatchTaskResponseSchema, { event: { case: "task", value: taskToProto(task, progress) } });
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
      if (isFinished(task.status) && lastHistoryStatus === task.status) return;
      await changed;
    }
  }
}
