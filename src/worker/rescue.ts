/**
 * A worker process's rescue part: finds the attempts of worker processes that died or lost their
 * lease and settles them (reconcile.ts), and delivers the outcomes that workers on this machine
 * spooled and could not record. One full reconcile pass at start, then a lost-attempt check every
 * TASK_RECONCILE_INTERVAL_MS, and between checks a cheaper look at the liveness locks alone, so a
 * process that died is rescued within a fraction of a second.
 */
import { errorMessage } from "../errors.js";
import { retryWhileUnavailable } from "../store/db.js";
import { databaseNow, liveWorkers, workersWithFreeLocks } from "../store/worker-liveness.js";
import { recordOrSpool } from "./execute-task.js";
import { reconcile, rescueLostAttempts, type LeaseJudgement, type ReconcileResult } from "./reconcile.js";
import type { WorkerContext, WorkerPart } from "./runner.js";

/** How often each worker process looks for liveness locks left free (a worker process that died). */
const EXIT_WATCH_MS = 250;

/** Lost-attempt checks and spooled-outcome delivery; see the module comment. */
export class Rescue implements WorkerPart {
  private judgement: LeaseJudgement | undefined;
  private rescuing: Promise<void> | undefined;
  private timers: NodeJS.Timeout[] = [];

  constructor(private readonly ctx: WorkerContext) {}

  /** Starts judging leases from now, delivers spooled outcomes, runs one full pass, then checks periodically. */
  async start(): Promise<void> {
    const { ctx } = this;
    // Leases are not judged across this reconciler's own downtime: it counts them from its start.
    const since = await retryWhileUnavailable(() => databaseNow(ctx.db.kysely), "starting the reconciler", Number.POSITIVE_INFINITY, ctx.logger);
    this.judgement = { leaseMs: ctx.config.leaseMs, since };
    await this.deliverSpooled().catch((err: unknown) => ctx.logger.error({ err: errorMessage(err) }, "could not deliver spooled outcomes"));
    // One full reconcile pass at start-up, so tasks orphaned while no worker ran are rescued now.
    await this.reconcileAll().catch((err: unknown) => ctx.logger.error({ err: errorMessage(err) }, "start-up reconcile failed"));
    const every = ctx.config.reconcileIntervalMs;
    if (every <= 0) return;
    this.timers.push(
      setInterval(() => this.rescueNow(), every),
      setInterval(() => {
        if (this.rescuing) return;
        workersWithFreeLocks(ctx.db.kysely).then(
          (free) => free.length > 0 && this.rescueNow(),
          () => undefined, // the next check reports database trouble
        );
      }, Math.min(EXIT_WATCH_MS, every)),
    );
  }

  /** A full reconcile pass (the maintenance cron runs one too), judging leases from this part's start. */
  reconcileAll(): Promise<ReconcileResult> {
    return reconcile(this.ctx.db.kysely, this.ctx.config.leaseMs, this.ctx.logger, this.judgement?.since, this.ctx.metrics);
  }

  /** Stops checking; a check in progress finishes first. */
  async stop(): Promise<void> {
    this.timers.forEach((t) => clearInterval(t));
    await this.rescuing;
  }

  private rescueNow(): void {
    const { ctx, judgement } = this;
    if (this.rescuing || !judgement) return;
    // Spooled outcomes of dead workers first, so a real outcome wins over "worker lost".
    this.rescuing = this.deliverSpooled()
      .then(() => rescueLostAttempts(ctx.db.kysely, judgement, ctx.logger, ctx.metrics))
      .then(
        () => undefined,
        (err: unknown) => ctx.logger.warn({ err: errorMessage(err) }, "lost-attempt check failed"),
      )
      .finally(() => (this.rescuing = undefined));
  }

  /**
   * Delivers the outcomes that workers on this machine spooled and could not record, once those
   * workers are gone (a live worker keeps retrying its own: delivering them too would only race it).
   */
  private async deliverSpooled(): Promise<void> {
    const { db, spool, logger, workerId } = this.ctx;
    const entries = (await spool.load()).filter((e) => e.workerId !== workerId);
    if (entries.length === 0) return;
    const live = await liveWorkers(db.kysely, [...new Set(entries.map((e) => e.workerId))]);
    for (const entry of entries.filter((e) => !live.has(e.workerId))) {
      const recorded = await recordOrSpool({ db, spool }, entry, logger.child({ taskId: entry.taskId, attempt: entry.attempt }), undefined, true);
      logger.info({ taskId: entry.taskId, attempt: entry.attempt, recorded: recorded !== undefined }, "delivered a spooled outcome");
    }
  }
}
