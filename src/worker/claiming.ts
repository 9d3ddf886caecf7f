/**
 * A worker process's claiming part: its slots (claim-loop.ts) running task attempts
 * (execute-task.ts) and recording their outcomes write-behind (outcome-writer.ts), the queue gate
 * (which queues are limited or held), and what tells the slots that jobs may have arrived:
 * graphile-worker's jobs:insert notification, the due times of jobs enqueued for later
 * (WakeSchedule), a queue's settings changing, and the poll for anything missed.
 */
import { JOBS_INSERT_CHANNEL, QUEUE_CHANNEL, WAKE_CHANNEL } from "../store/channels.js";
import { claimFor, ClaimLoop } from "./claim-loop.js";
import { runAttempt, type ExecuteDeps } from "./execute-task.js";
import { DEFAULT_FILE_CAPS, postgresFileBytes } from "../store/files.js";
import { OutcomeWriter } from "./outcome-writer.js";
import { ProgressWriter } from "./progress.js";
import { QueueGate } from "./queue-gate.js";
import { tracedClaim } from "../tracing.js";
import type { WorkerContext, WorkerPart } from "./runner.js";
import { WakeSchedule } from "./wake.js";

/** What claiming needs besides the worker's context. */
export interface ClaimingOptions {
  /** How long an attempt's out-of-process work may go without a lease renewal (see leaseTiming). */
  watchdogMs: number;
  /** See ExecuteDeps.abandonAfterAbortMs. */
  abandonAfterAbortMs?: number;
}

/** The slots and what wakes them; see the module comment. */
export class Claiming implements WorkerPart {
  private readonly gate: QueueGate;
  private readonly outcomes: OutcomeWriter;
  private readonly slots: ClaimLoop;
  private readonly wake: WakeSchedule;
  /** Fires once the slots have stopped: a write-behind outcome then stops waiting out an outage (it stays spooled). */
  private readonly stopping = new AbortController();
  private subscriptions: (() => void)[] = [];
  private poll: NodeJS.Timeout | undefined;

  constructor(
    private readonly ctx: WorkerContext,
    options: ClaimingOptions,
  ) {
    const { config, db, logger } = ctx;
    this.gate = new QueueGate(db.kysely, ctx.queues, logger, ctx.types);
    // Outcomes are recorded write-behind, in batches (outcome-writer.ts).
    this.outcomes = new OutcomeWriter(db, config.outcomeFlushMs);
    const deps: ExecuteDeps = {
      db,
      registry: ctx.registry,
      workerId: ctx.workerId,
      logger,
      backoff: { baseMs: config.backoffBaseMs, maxMs: config.backoffMaxMs },
      maxLogLinesPerTask: config.maxLogLinesPerTask,
      maxLogBytesPerTask: config.maxLogBytesPerTask,
      maxResultBytes: config.maxResultBytes,
      inFlight: ctx.inFlight,
      watchdogMs: options.watchdogMs,
      spool: ctx.spool,
      outcomes: this.outcomes,
      progress: new ProgressWriter(db),
      stopping: this.stopping.signal,
      metrics: ctx.metrics,
      abandonAfterAbortMs: options.abandonAfterAbortMs,
      queueGate: this.gate,
      files: {
        db: db.kysely,
        bytes: postgresFileBytes(db.kysely),
        caps: { perTaskBytes: config.filesMaxTaskBytes ?? DEFAULT_FILE_CAPS.perTaskBytes, totalBytes: config.filesMaxTotalBytes ?? DEFAULT_FILE_CAPS.totalBytes },
      },
    };
    this.slots = new ClaimLoop({
      slots: config.workerConcurrency,
      // A rate limit out of units: woken when its next unit is due (the WakeSchedule), not polled.
      claim: tracedClaim(ctx.queues, claimFor(db, ctx.workerId, this.gate, ctx.queues, ctx.types, (at) => this.wake.add(at), ctx.labels)),
      run: (task, shutdown) => runAttempt(deps, task, shutdown),
      logger,
    });
    this.wake = new WakeSchedule(() => this.jobsMayHaveArrived());
  }

  /** Attempts running in a slot now. */
  get running(): number {
    return this.slots.running;
  }

  /** Listens for what brings jobs, and starts claiming. */
  async start(): Promise<void> {
    const { listener, config } = this.ctx;
    this.subscriptions.push(
      listener.subscribe(WAKE_CHANNEL, (payload) => payload.split(",").forEach((at) => this.wake.add(Number(at)))),
      // A queue paused, resumed or re-limited: read the settings again and claim at once (a resumed
      // queue's jobs start without waiting for a poll).
      listener.subscribe(QUEUE_CHANNEL, () => {
        this.gate.invalidate();
        this.slots.nudge();
      }),
      // New jobs (add_job(s) notifies jobs:insert); on (re)connecting, one may have been missed.
      listener.subscribe(JOBS_INSERT_CHANNEL, () => this.jobsMayHaveArrived(), () => this.jobsMayHaveArrived()),
    );
    this.poll = setInterval(() => this.jobsMayHaveArrived(), config.pollIntervalMs);
    this.slots.start();
  }

  /**
   * Graceful stop: claim nothing more, let running attempts finish within the grace period, then
   * abort the rest (recorded as interrupted and retried elsewhere); then record the outcomes still
   * waiting for their batch (or spool them if the database is away).
   */
  async stop(): Promise<void> {
    clearInterval(this.poll);
    this.wake.stop();
    this.subscriptions.forEach((end) => end());
    await this.slots.stop(this.ctx.config.shutdownGraceMs);
    this.stopping.abort();
    await this.outcomes.drained();
  }

  /**
   * A job was inserted, one came due, or the poll: any of these may bring jobs to a limited queue
   * that had none, so every queue is asked again.
   */
  private jobsMayHaveArrived(): void {
    this.gate.wake();
    this.slots.nudge();
  }
}
