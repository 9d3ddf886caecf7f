import { useSyncExternalStore } from "react";
import type { TaskChange } from "../../../src/gen/task/v1/task_pb.js";
import { isAuthError, isConnectionError, taskClient } from "./client";
import { backoffMs, reportOutage, reportRecovered } from "./connection";

/**
 * One WatchTasks stream shared by everything on the page that wants task changes (a view's list
 * and its counts subscribe to the same stream: one stream per view). Opened with the first
 * subscriber, closed with the last. When it drops it reconnects with backoff from the last cursor
 * it received (the server then sends exactly what was missed), reporting "reconnecting" through
 * the connection banner; a resync (the page fell behind) is passed on like a change, so
 * subscribers re-read.
 */
export type StreamState = "connecting" | "live" | "reconnecting" | "closed";

type Listener = (change: TaskChange | "resync") => void;

const SOURCE = "watch-tasks";
const listeners = new Set<Listener>();
const stateListeners = new Set<() => void>();
let state: StreamState = "closed";
let abort: AbortController | undefined;
let cursor = "";

function setState(next: StreamState): void {
  if (state === next) return;
  state = next;
  for (const l of stateListeners) l();
}

async function run(signal: AbortSignal): Promise<void> {
  let attempt = 0;
  setState("connecting");
  while (!signal.aborted) {
    try {
      for await (const res of taskClient.watchTasks({ cursor }, { signal })) {
        if (attempt > 0 || state !== "live") {
          attempt = 0;
          reportRecovered(SOURCE);
          // Back after a gap the cursor could not cover (first connect, or a resync): re-read.
          setState("live");
        }
        const e = res.event;
        if (e.case === "heartbeat") cursor = e.value.cursor;
        else if (e.case === "resync") {
          cursor = e.value.cursor;
          for (const l of listeners) l("resync");
        } else if (e.case === "change") {
          cursor = e.value.cursor;
          for (const l of listeners) l(e.value);
        }
      }
      throw new Error("the stream ended");
    } catch (err) {
      if (signal.aborted) return;
      // A refused token: the prompt appears; try again once a token is given (after backoff).
      if (!isConnectionError(err) && !isAuthError(err)) cursor = "";
      attempt += 1;
      const delay = backoffMs(attempt);
      reportOutage({ source: SOURCE, attempt, retryAt: Date.now() + delay });
      setState("reconnecting");
      await new Promise((resolve) => {
        const t = setTimeout(resolve, delay);
        signal.addEventListener("abort", () => (clearTimeout(t), resolve(undefined)), { once: true });
      });
    }
  }
}

/** Calls `listener` for every task change (or "resync") while subscribed. */
export function subscribeTaskChanges(listener: Listener): () => void {
  listeners.add(listener);
  if (!abort) {
    abort = new AbortController();
    cursor = "";
    void run(abort.signal);
  }
  return () => {
    listeners.delete(listener);
    if (listeners.size > 0 || !abort) return;
    abort.abort();
    abort = undefined;
    reportRecovered(SOURCE);
    setState("closed");
  };
}

/** The shared stream's state, for hooks that fall back to polling while it is not live. */
export function useTaskStreamState(): StreamState {
  return useSyncExternalStore(
    (l) => {
      stateListeners.add(l);
      return () => stateListeners.delete(l);
    },
    () => state,
  );
}
