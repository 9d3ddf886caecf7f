import { create } from "@bufbuild/protobuf";
import { timestampFromDate, timestampNow } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import { errorMessage, InvalidArgumentError } from "../errors.js";
import { TaskChange_Kind, TaskChangeSchema, WatchTasksResponseSchema, type WatchTasksRequest, type WatchTasksResponse } from "../gen/task/v1/task_pb.js";
import type { Logger } from "../logger.js";
import type { Database, TaskRow } from "../store/schema.js";
import { isFinished } from "../store/lifecycle/index.js";
import { compareCursors, decodeCursor, encodeCursor, feedHorizon, readFeed, rowCursor, type FeedCursor, type FeedRow } from "../store/task-feed.js";
import { findListedTasks, type TaskFilter } from "../store/tasks.js";
import { databaseNow, findProgress, progressSince } from "../store/task-progress.js";
import { statusToProto, taskToProto } from "./convert.js";
import type { TaskEvents } from "./task-events.js";
import { callerOf } from "./identity.js";
import { narrowFilter } from "./roles.js";
import { validateListTasks } from "./validate.js";

/** Tunables of the feed (tests shorten them). */
export interface TaskFeedOptions {
  /** Read the feed at least this often even without a notification. */
  pollMs: number;
  /** A heartbeat goes out on a stream after this long without a message. */
  heartbeatMs: number;
  /** Messages queued for one stream before it is told to resync instead. */
  maxQueued: number;
  /** Feed rows read per query. */
  batchRows: number;
}

export const DEFAULT_FEED_OPTIONS: TaskFeedOptions = { pollMs: 1_000, heartbeatMs: 10_000, maxQueued: 1_000, batchRows: 500 };

type Filter = Pick<TaskFilter, "statuses" | "types" | "ids" | "scheduleIds" | "queues">;

/** One change, ready to send, with what a filter looks at. */
interface Change {
  cursor: FeedCursor;
  row: FeedRow;
  task: TaskRow;
  message: WatchTasksResponse;
}

function matches(filter: Filter, c: Change): boolean {
  const { task, row } = c;
  if (filter.statuses.length > 0 && !filter.statuses.includes(row.status) && !(row.previous_status && filter.statuses.includes(row.previous_status))) return false;
  if (filter.types.length > 0 && !filter.types.includes(task.type)) return false;
  if (filter.ids.length > 0 && !filter.ids.includes(task.id)) return false;
  if (filter.queues && filter.queues.length > 0 && !filter.queues.includes(task.queue)) return false;
  if (filter.scheduleIds && filter.scheduleIds.length > 0 && !(task.schedule_id && filter.scheduleIds.includes(task.schedule_id))) return false;
  return true;
}

/** One open WatchTasks stream, as the feed sees it. */
class Watcher {
  queue: WatchTasksResponse[] = [];
  /** Set when the queue overflowed: the changes up to here were skipped. */
  resyncAt: FeedCursor | undefined;
  /** Everything up to here has been queued, skipped or did not match: with an empty queue, the resume point. */
  seen: FeedCursor;
  /** While catching up from the client's cursor, the shared reader's deliveries wait here. */
  held: { changes: Change[]; upTo: FeedCursor }[] | undefined = [];
  private heldCount = 0;
  private wake: (() => void) | undefined;

  constructor(
    readonly filter: Filter,
    from: FeedCursor,
    private readonly maxQueued: number,
  ) {
    this.seen = from;
  }

  /** From the shared reader. */
  offer(changes: Change[], upTo: FeedCursor): void {
    if (!this.held) return this.deliver(changes, upTo);
    this.held.push({ changes, upTo });
    this.heldCount += changes.length;
    if (this.heldCount > this.maxQueued) {
      // Catching up takes too long to hold on to what arrives meanwhile: resync at the newest.
      this.held = [{ changes: [], upTo }];
      this.heldCount = 0;
      this.resyncAt = upTo;
    }
  }

  /**
   * Progress reports from the shared reader: sent to a stream that is following (not catching up,
   * not due a resync), never replayed, and not moving `seen` (they are no feed rows).
   */
  offerProgress(changes: Change[]): void {
    if (this.held || this.resyncAt) return;
    for (const c of changes) {
      if (!matches(this.filter, c)) continue;
      this.queue.push(c.message);
      if (this.queue.length > this.maxQueued) {
        this.queue = [];
        this.resyncAt = this.seen;
      }
    }
    this.notify();
  }

  /** Catching up is over: what the shared reader delivered meanwhile follows (overlaps skipped). */
  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const { changes, upTo } of held) this.deliver(changes, upTo);
  }

  deliver(changes: Change[], upTo: FeedCursor): void {
    for (const c of changes) {
      if (compareCursors(c.cursor, this.seen) <= 0) continue;
      this.seen = c.cursor;
      if (this.resyncAt || !matches(this.filter, c)) continue;
      this.queue.push(c.message);
      if (this.queue.length > this.maxQueued) {
        // A slow reader: drop what is queued and tell it to re-read instead of buffering on.
        this.queue = [];
        this.resyncAt = c.cursor;
      }
    }
    if (compareCursors(upTo, this.seen) > 0) this.seen = upTo;
    if (this.resyncAt && compareCursors(this.seen, this.resyncAt) > 0) this.resyncAt = this.seen;
    this.notify();
  }

  notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** Resolves when there is something to send, after `ms`, or on abort. */
  wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.queue.length > 0 || this.resyncAt || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
      this.wake = done;
    });
  }
}

/**
 * The change feed of one server process: one reader of task_history for every WatchTasks stream
 * it serves (however many), woken by the process's single LISTEN connection (TaskEvents: while a
 * stream is open the history trigger notifies '*') and polling every `pollMs` regardless. Each
 * stream gets the changes matching its filter through a bounded queue; a stream whose reader
 * falls more than `maxQueued` messages behind gets one resync message instead, so a slow consumer
 * costs a cursor, not memory.
 */
export class TaskFeed {
  private readonly watchers = new Set<Watcher>();
  private cursor: FeedCursor | undefined;
  private running: Promise<void> | undefined;
  private stop = new AbortController();
  private unsubscribe: (() => Promise<void>) | undefined;
  /** Progress reported after this (the database's clock) is still to be sent. */
  private progressAt: Date | undefined;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly events: TaskEvents,
    private readonly logger: Logger,
    readonly options: TaskFeedOptions = DEFAULT_FEED_OPTIONS,
  ) {}

  /** Open streams (for tests and metrics). */
  get size(): number {
    return this.watchers.size;
  }

  /**
   * Attaches and detaches run one at a time: a stream that attaches while the last one is still
   * detaching (a client reconnecting at once) must not find the reader "running" just before that
   * detach stops it, and be left with no reader.
   */
  private lifecycle: Promise<void> = Promise.resolve();

  private serialized(step: () => Promise<void>): Promise<void> {
    const next = this.lifecycle.then(step);
    this.lifecycle = next.catch(() => undefined);
    return next;
  }

  private attach(w: Watcher): Promise<void> {
    return this.serialized(async () => {
      this.watchers.add(w);
      if (this.running) return;
      this.stop = new AbortController();
      this.unsubscribe = await this.events.subscribe("0");
      this.cursor = (await feedHorizon(this.db)).cursor;
      this.progressAt = await databaseNow(this.db);
      this.running = this.loop(this.stop.signal).finally(() => (this.running = undefined));
    });
  }

  private detach(w: Watcher): Promise<void> {
    return this.serialized(async () => {
      this.watchers.delete(w);
      if (this.watchers.size > 0) return;
      this.stop.abort();
      await this.running;
      await this.unsubscribe?.();
      this.unsubscribe = undefined;
    });
  }

  private async loop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      // Registered before reading, so a change between the read and the wait is not missed.
      const changed = this.events.wait("*", this.options.pollMs, signal);
      try {
        const { changes, upTo, full } = await this.read(this.cursor!);
        this.cursor = upTo;
        for (const w of this.watchers) w.offer(changes, upTo);
        if (full) continue;
        const progress = await this.readProgress();
        for (const w of this.watchers) w.offerProgress(progress);
      } catch (err) {
        this.logger.warn({ err: errorMessage(err) }, "could not read the task change feed; retrying");
      }
      await changed;
    }
  }

  /**
   * Progress reported since the last read, as KIND_PROGRESS changes. Polled with the feed (every
   * `pollMs` at most, and whenever history wakes it), so a stream sees a running task's progress
   * about as often as workers store it (once a second). Best effort: a report whose transaction
   * commits after a later one was read is skipped, and the task's next report replaces it anyway.
   */
  private async readProgress(): Promise<Change[]> {
    const rows = await progressSince(this.db, this.progressAt!, this.options.batchRows);
    const last = rows.at(-1);
    if (!last) return [];
    this.progressAt = last.updated_at;
    const tasks = new Map((await findListedTasks(this.db, [...new Set(rows.map((r) => r.task_id))])).map((t) => [t.id, t]));
    const cursor = this.cursor!;
    const changes: Change[] = [];
    for (const p of rows) {
      const task = tasks.get(p.task_id);
      if (!task || p.attempt !== task.attempts) continue;
      const row: FeedRow = { id: "0", xid: "0", task_id: task.id, status: task.status, previous_status: null, attempt: p.attempt, details: "", created_at: p.updated_at };
      const message = create(WatchTasksResponseSchema, {
        event: {
          case: "change",
          value: create(TaskChangeSchema, {
            kind: TaskChange_Kind.PROGRESS,
            task: taskToProto(task, p),
            status: statusToProto(task.status),
            attempt: p.attempt,
            changedAt: timestampFromDate(p.updated_at),
            cursor: encodeCursor(cursor),
          }),
        },
      });
      changes.push({ cursor, row, task, message });
    }
    return changes;
  }

  /** Feed rows after `after` as changes, and the position reached. */
  async read(after: FeedCursor): Promise<{ changes: Change[]; upTo: FeedCursor; full: boolean }> {
    const { rows, horizon } = await readFeed(this.db, after, this.options.batchRows);
    const full = rows.length === this.options.batchRows;
    const tasks = new Map((await findListedTasks(this.db, [...new Set(rows.map((r) => r.task_id))])).map((t) => [t.id, t]));
    const progress = await findProgress(this.db, [...tasks.values()].filter((t) => t.attempts > 0).map((t) => t.id));
    const changes: Change[] = [];
    for (const row of rows) {
      const task = tasks.get(row.task_id);
      if (!task) continue; // deleted since (retention)
      const cursor = rowCursor(row);
      const kind = row.previous_status === null ? TaskChange_Kind.CREATED : isFinished(row.status) ? TaskChange_Kind.FINISHED : TaskChange_Kind.STATUS_CHANGED;
      const message = create(WatchTasksResponseSchema, {
        event: {
          case: "change",
          value: create(TaskChangeSchema, {
            kind,
            task: taskToProto(task, progress.get(task.id)),
            status: statusToProto(row.status),
            previousStatus: row.previous_status ? statusToProto(row.previous_status) : undefined,
            attempt: row.attempt,
            details: row.details,
            changedAt: timestampFromDate(row.created_at),
            cursor: encodeCursor(cursor),
          }),
        },
      });
      changes.push({ cursor, row, task, message });
    }
    const last = rows.at(-1);
    let upTo = last ? rowCursor(last) : after;
    if (!full && compareCursors(horizon, upTo) > 0) upTo = horizon;
    return { changes, upTo, full };
  }

  /** WatchTasks: catch up from the request's cursor, then follow the shared feed. */
  async *watch(req: WatchTasksRequest, ctx: HandlerContext): AsyncIterable<WatchTasksResponse> {
    const listReq = req.filter;
    if (listReq && (listReq.pageSize !== 0 || listReq.pageToken !== "" || listReq.pageNumber !== 0)) {
      throw InvalidArgumentError.of("filter", "page_size, page_token and page_number do not apply to WatchTasks");
    }
    const requested = listReq ? validateListTasks(listReq) : { statuses: [], types: [], ids: [], scheduleIds: [], queues: [] };
    // A restricted token follows only its queues and types. When it asked for none of those, it
    // gets heartbeats only: no task has id 0, so the filter matches nothing.
    const filter = narrowFilter(callerOf(ctx), requested) ?? { ...requested, ids: ["0"] };
    let from: FeedCursor | undefined;
    if (req.cursor !== "") {
      from = decodeCursor(req.cursor);
      if (!from) throw InvalidArgumentError.of("cursor", "is malformed: pass a cursor from an earlier WatchTasks message, or none to start from now");
      const { xmax } = await feedHorizon(this.db);
      if (from.xid >= xmax) throw InvalidArgumentError.of("cursor", "is ahead of this database: it comes from another deployment");
    }
    from ??= (await feedHorizon(this.db)).cursor;
    const w = new Watcher(filter, from, this.options.maxQueued);
    const heartbeat = () => create(WatchTasksResponseSchema, { event: { case: "heartbeat", value: { cursor: encodeCursor(w.seen), time: timestampNow() } } });
    await this.attach(w);
    try {
      // Catch up from the client's cursor with reads of our own, then take what the shared reader
      // delivered meanwhile (it covers everything after its position when we attached, and our
      // last read reached at least that far); overlaps are skipped by cursor.
      for (let pos = from; ; ) {
        const { changes, upTo, full } = await this.read(pos);
        w.deliver(changes, upTo);
        pos = upTo;
        if (!full) break;
        ctx.signal.throwIfAborted();
        // A long backlog is sent as it is read, so catching up never holds more than a batch.
        while (w.queue.length > 0) {
          const batch = w.queue;
          w.queue = [];
          for (const message of batch) yield message;
        }
      }
      w.release();
      let lastSent = -Infinity;
      while (!ctx.signal.aborted) {
        if (w.resyncAt) {
          const at = w.resyncAt;
          w.resyncAt = undefined;
          yield create(WatchTasksResponseSchema, {
            event: { case: "resync", value: { cursor: encodeCursor(at), reason: `the stream fell more than ${this.options.maxQueued} changes behind; re-read with ListTasks` } },
          });
          lastSent = Date.now();
          continue;
        }
        if (w.queue.length > 0) {
          const batch = w.queue;
          w.queue = [];
          for (const message of batch) yield message;
          lastSent = Date.now();
          continue;
        }
        // Only with nothing queued does w.seen say how far this stream has come.
        if (Date.now() - lastSent >= this.options.heartbeatMs) {
          yield heartbeat();
          lastSent = Date.now();
        }
        await w.wait(Math.max(1, this.options.heartbeatMs - (Date.now() - lastSent)), ctx.signal);
      }
    } finally {
      await this.detach(w);
    }
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.running;
    for (const w of this.watchers) w.notify();
  }
}
