import { useEffect, useState } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { createConnectQueryKey } from "@connectrpc/connect-query";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { GetTaskResponseSchema, TaskService, type Task, type TaskStatus, type TaskHistoryEntry, type TaskLogLine, type WatchTaskResponse } from "../../../src/gen/task/v1/task_pb.js";
import { isTerminal } from "../format";
import { useAuthState } from "../services/auth";
import { isConnectionError, taskClient, transport } from "../services/client";
import { backoffMs, reportOutage, reportRecovered } from "../services/connection";

/** Lines kept in the page; the whole log is downloaded separately. */
export const MAX_TAIL_LINES = 2000;
/** Stream events are applied in batches this often, so a burst of output renders once, not per line. */
const FLUSH_MS = 80;

/** What a task's watch stream has delivered, and the stream's state. */
export interface WatchedTask {
  task?: Task;
  history: TaskHistoryEntry[];
  /** The last MAX_TAIL_LINES output lines. */
  logs: TaskLogLine[];
  /** Highest output seq seen (how many lines the task printed). */
  lastSeq: number;
  /**
   * connecting: opening; live: open; reconnecting: dropped, trying again after a backoff; done:
   * the task finished and the stream delivered everything; failed: the server refused (see error).
   */
  state: "connecting" | "live" | "reconnecting" | "done" | "failed";
  /** Retries since the stream last delivered something. */
  attempt: number;
  error?: unknown;
}

const initial: WatchedTask = { history: [], logs: [], lastSeq: 0, state: "connecting", attempt: 0 };

function apply(prev: WatchedTask, events: WatchTaskResponse["event"][]): WatchedTask {
  let { task, history, logs, lastSeq } = prev;
  let lastHistoryId = history.at(-1)?.id ?? 0n;
  const newLines: TaskLogLine[] = [];
  const newHistory: TaskHistoryEntry[] = [];
  for (const e of events) {
    // After a reconnect the server sends history and output from the start again: skip what we have.
    if (e.case === "task") task = e.value;
    else if (e.case === "history" && e.value.id > lastHistoryId) {
      newHistory.push(e.value);
      lastHistoryId = e.value.id;
    } else if (e.case === "log" && e.value.seq > lastSeq) {
      newLines.push(e.value);
      lastSeq = e.value.seq;
    }
  }
  if (newHistory.length > 0) history = [...history, ...newHistory];
  if (newLines.length > 0) logs = [...logs, ...newLines].slice(-MAX_TAIL_LINES);
  return { ...prev, task, history, logs, lastSeq, state: "live", attempt: 0, error: undefined };
}

/**
 * Follows one task through WatchTask (state, history, output), reconnecting with backoff when the
 * stream drops, until the task finishes. The latest task is also written into the GetTask query's
 * cache so the rest of the page (and a later visit) sees it without another call. A new
 * `generation` reopens the stream (after a retry, say, since the stream ends at a finished task).
 */
export function useWatchTask(id: bigint, generation = 0): WatchedTask {
  const [watched, setWatched] = useState<WatchedTask>(initial);
  const queryClient = useQueryClient();
  const { epoch } = useAuthState();

  useEffect(() => {
    const abort = new AbortController();
    const source = `watch-task:${id}`;
    let pending: WatchTaskResponse["event"][] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const flush = () => {
      timer = undefined;
      const events = pending;
      pending = [];
      if (events.length > 0 && !abort.signal.aborted) setWatched((prev) => apply(prev, events));
    };
    const cacheTask = (task: Task) =>
      queryClient.setQueryData(createConnectQueryKey({ schema: TaskService.method.getTask, transport, input: { id }, cardinality: "finite" }), create(GetTaskResponseSchema, { task }));

    // Keep what is on screen while reopening for a new generation; start empty for a new task.
    setWatched((prev) => (prev.task?.id === id ? { ...prev, state: "connecting" } : initial));
    void (async () => {
      let attempt = 0;
      while (!abort.signal.aborted) {
        try {
          let status: TaskStatus | undefined;
          for await (const res of taskClient.watchTask({ id, includeLogs: true }, { signal: abort.signal })) {
            if (attempt > 0) {
              attempt = 0;
              reportRecovered(source);
            }
            if (res.event.case === "task") {
              status = res.event.value.status;
              cacheTask(res.event.value);
            }
            pending.push(res.event);
            timer ??= setTimeout(flush, FLUSH_MS);
          }
          // The server ends the stream once the task is finished and everything was sent; an end
          // before that (a proxy's or the server's time limit) is a drop like any other.
          if (status === undefined || !isTerminal(status)) throw new ConnectError("the stream ended before the task finished", Code.Unavailable);
          clearTimeout(timer);
          flush();
          reportRecovered(source);
          setWatched((prev) => ({ ...prev, state: "done", attempt: 0 }));
          return;
        } catch (err) {
          if (abort.signal.aborted) return;
          clearTimeout(timer);
          flush();
          if (!isConnectionError(err)) {
            reportRecovered(source);
            setWatched((prev) => ({ ...prev, state: "failed", error: err }));
            return;
          }
          attempt += 1;
          const delay = backoffMs(attempt);
          reportOutage({ source, attempt, retryAt: Date.now() + delay });
          setWatched((prev) => ({ ...prev, state: "reconnecting", attempt }));
          await new Promise((resolve) => {
            const t = setTimeout(resolve, delay);
            abort.signal.addEventListener("abort", () => (clearTimeout(t), resolve(undefined)), { once: true });
          });
        }
      }
    })();
    return () => {
      abort.abort();
      clearTimeout(timer);
      reportRecovered(source);
    };
  }, [id, generation, epoch, queryClient]);

  return watched;
}
