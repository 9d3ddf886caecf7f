/**
 * A worker process's fencing part: the liveness lock (a reconciler can tell at once that the
 * process died), the heartbeat (renews the leases of its attempts and reports what it serves), and
 * the abort of attempts that are no longer its own (a reconciler settled them after a lease ran
 * out), of cancelled ones and the pause of paused ones (notifications, with the heartbeat as the
 * fallback for one that was missed). See docs/design/fencing.md.
 */
import os from "node:os";
import { errorMessage } from "../errors.js";
import { heartbeat } from "../store/lifecycle/index.js";
import { unregisterWorker } from "../store/workers.js";
import { CANCEL_CHANNEL, PAUSE_CHANNEL } from "../store/channels.js";
import { retryWhileUnavailable } from "../store/db.js";
import { registerWorkerTypes, type TaskTypeVersionInput } from "../store/task-types.js";
import { holdWorkerLock, type WorkerLock } from "../store/worker-liveness.js";
import { AttemptAborted } from "./execute-task.js";
import type { WorkerContext, WorkerPart } from "./runner.js";

/** What fencing needs besides the worker's context. */
export interface FencingOptions {
  /** The task types this process registers (task_types), again after its row was re-created. */
  served: TaskTypeVersionInput[];
  /** Attempts running in a slot now (reported with each heartbeat). */
  busy: () => number;
  /** graphile-worker's ids in this process, reported so a reconciler can release their job locks if it dies. */
  graphileIds: () => string[];
  /** A heartbeat answer slower than this does not renew leases (see leaseTiming). */
  renewalRttMs: number;
}

/** The liveness lock, the heartbeat and the fencing of attempts; see the module comment. */
export class Fencing implements WorkerPart {
  private lock: WorkerLock | undefined;
  private beat: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private subscriptions: (() => void)[] = [];

  constructor(
    private readonly ctx: WorkerContext,
    private readonly options: FencingOptions,
  ) {}

  /** Takes the liveness lock, registers the task types, listens for cancels and pauses, and beats once. */
  async start(): Promise<void> {
    const { ctx } = this;
    // The liveness lock first: from now on a reconciler can tell at once if this process dies.
    // After a reconnection the row may have been re-created by the lock (a reconciler judged this
    // process dead and deleted it, with its types): register them again.
    this.lock = holdWorkerLock(ctx.databaseUrl, ctx.workerId, ctx.logger, () => {
      this.beatNow();
      this.registerTypes().catch((err: unknown) => ctx.logger.warn({ err: errorMessage(err) }, "could not register task types again"));
    });
    await this.lock.ready;
    await retryWhileUnavailable(() => this.registerTypes(), "registering task types", Number.POSITIVE_INFINITY, ctx.logger);
    this.subscriptions.push(
      ctx.listener.subscribe(CANCEL_CHANNEL, (taskId) => this.cancel(taskId)),
      // A pause or resume of a running attempt (payload `<task id>:<status>`).
      ctx.listener.subscribe(PAUSE_CHANNEL, (payload) => {
        const [taskId, status] = payload.split(":");
        for (const entry of ctx.inFlight.values()) if (entry.taskId === taskId) entry.pause.set(status === "paused");
      }),
    );
    this.beat = setInterval(() => this.beatNow(), ctx.config.heartbeatIntervalMs);
    await this.beatOnce();
  }

  /** Beats now, unless a beat is in flight. */
  beatNow(): void {
    this.beating ??= this.beatOnce().finally(() => (this.beating = undefined));
  }

  /** Stops beating, removes the worker's row and releases the liveness lock. */
  async stop(): Promise<void> {
    clearInterval(this.beat);
    this.subscriptions.forEach((end) => end());
    // A beat still in flight would write the row again after it is removed.
    await this.beating;
    if (this.lock) {
      await unregisterWorker(this.ctx.db.kysely, this.ctx.workerId).catch((err: unknown) => this.ctx.logger.warn({ err: errorMessage(err) }, "could not unregister"));
      await this.lock.close();
    }
  }

  private registerTypes(): Promise<void> {
    return registerWorkerTypes(this.ctx.db.kysely, this.ctx.workerId, this.options.served);
  }

  private cancel(taskId: string): void {
    for (const entry of this.ctx.inFlight.values()) {
      if (entry.taskId === taskId) entry.controller.abort(new AttemptAborted("cancel", "cancelled by request"));
    }
  }

  /**
   * One heartbeat renews every attempt the database still says is ours, and fences the rest: an
   * attempt missing from the answer was settled by a reconciler, so it is aborted at once.
   */
  private async beatOnce(): Promise<void> {
    const { ctx } = this;
    const snapshot = [...ctx.inFlight.values()];
    const sentAt = Date.now();
    try {
      const owned = await heartbeat(ctx.db.kysely, ctx.workerId, this.options.graphileIds(), snapshot.map((a) => ({ taskId: a.taskId, attempt: a.attempt })), {
        types: ctx.types,
        queues: ctx.queues,
        slots: ctx.config.workerConcurrency,
        busy: this.options.busy(),
        host: os.hostname(),
        pid: process.pid,
        labels: ctx.labels,
      });
      const fresh = Date.now() - sentAt <= this.options.renewalRttMs;
      const mine = new Map(owned.map((o) => [`${o.taskId}:${o.attempt}`, o]));
      for (const entry of snapshot) {
        const o = mine.get(`${entry.taskId}:${entry.attempt}`);
        if (!o) {
          // Unless its outcome was recorded meanwhile (it left inFlight): then it ended on its own.
          if (ctx.inFlight.get(`${entry.taskId}:${entry.attempt}`) === entry && !entry.controller.signal.aborted) {
            ctx.logger.warn({ taskId: entry.taskId, attempt: entry.attempt }, "aborting an attempt that is no longer this worker's");
            entry.controller.abort(new AttemptAborted("lost", "aborted: the attempt was no longer this worker's (its lease had run out)"));
          }
          continue;
        }
        if (o.cancelRequested) this.cancel(entry.taskId);
        // A fallback for a missed pause notification; an answer older than the latest one is stale.
        if (o.paused !== entry.pause.paused && entry.pause.changedAt < sentAt) entry.pause.set(o.paused);
        // A slow answer does not renew: the lease the database recorded may be older than it looks.
        if (fresh) entry.renewed.forEach((renew) => renew());
      }
    } catch (err) {
      ctx.logger.warn({ err: errorMessage(err) }, "heartbeat failed");
    }
  }
}
