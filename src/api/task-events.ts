import { randomBytes } from "node:crypto";
import type { Kysely } from "kysely";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import { TASK_EVENTS_CHANNEL } from "../store/channels.js";
import type { Listener } from "../store/listen.js";
import type { Database } from "../store/schema.js";
import { unwatchTask, watchTasks } from "../store/task-watchers.js";

/** A registration lives this long unless refreshed, so a crashed server's interest fades. */
const WATCH_TTL_MS = 60_000;
const WATCH_REFRESH_MS = 20_000;

/**
 * Wakes WatchTask streams when their task changes. The server registers the tasks it watches in
 * task_watchers (the triggers notify only for those, on TASK_EVENTS_CHANNEL) and subscribes on the
 * process's listener. Without a listener, or while it is disconnected, waits simply time out and
 * watchers poll.
 */
export class TaskEvents {
  private readonly serverId = `api-${randomBytes(6).toString("hex")}`;
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly watched = new Map<string, number>();
  private readonly unsubscribe: (() => void) | undefined;
  private readonly refresh: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Kysely<Database>,
    listener: Listener | undefined,
    private readonly logger: Logger,
  ) {
    if (!listener) return;
    this.unsubscribe = listener.subscribe(TASK_EVENTS_CHANNEL, (id) => this.wake(id));
    this.refresh = setInterval(() => {
      watchTasks(db, this.serverId, [...this.watched.keys()], WATCH_TTL_MS).catch((err: unknown) =>
        logger.warn({ err: errorMessage(err) }, "could not refresh watched tasks"),
      );
    }, WATCH_REFRESH_MS);
    this.refresh.unref();
  }

  /** Starts notifications for a task; call the returned function when done watching. */
  async subscribe(taskId: string): Promise<() => Promise<void>> {
    if (!this.unsubscribe) return async () => undefined;
    const count = this.watched.get(taskId) ?? 0;
    this.watched.set(taskId, count + 1);
    if (count === 0) await watchTasks(this.db, this.serverId, [taskId], WATCH_TTL_MS);
    return async () => {
      const left = (this.watched.get(taskId) ?? 1) - 1;
      if (left > 0) return void this.watched.set(taskId, left);
      this.watched.delete(taskId);
      await unwatchTask(this.db, this.serverId, taskId).catch((err: unknown) => this.logger.debug({ err: errorMessage(err) }, "could not unwatch"));
    };
  }

  private wake(taskId: string): void {
    const set = this.waiters.get(taskId);
    if (!set) return;
    this.waiters.delete(taskId);
    for (const resolve of set) resolve();
  }

  /** Resolves when the task changes, after `timeoutMs`, or when `signal` aborts. */
  wait(taskId: string, timeoutMs: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const set = this.waiters.get(taskId) ?? new Set();
      this.waiters.set(taskId, set);
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        set.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      timer.unref();
      signal.addEventListener("abort", done, { once: true });
      set.add(done);
    });
  }

  async close(): Promise<void> {
    clearInterval(this.refresh);
    this.unsubscribe?.();
    for (const id of [...this.waiters.keys()]) this.wake(id);
  }
}
