import type { Kysely } from "kysely";
import { Backoff, type BackoffPolicy } from "../backoff.js";
import { errorMessage, InvalidArgumentError, isDatabaseUnavailable, TaskTypeDisabledError } from "../errors.js";
import type { Logger } from "../logger.js";
import { TaskTypeCatalog } from "../plugins/catalog.js";
import type { PluginRegistry } from "../plugins/registry.js";
import type { Db } from "../store/db.js";
import { SCHEDULES_CHANNEL } from "../store/channels.js";
import type { Listener } from "../store/listen.js";
import {
  claimDueSchedule,
  findTickTask,
  nextDueAt,
  recordTicks,
  skipFailedTick,
  unfinishedScheduleTasks,
  type TickOutcome,
} from "../store/schedules.js";
import type { Database, ScheduleRow } from "../store/schema.js";
import { insertTasksInTransaction } from "../store/tasks.js";
import { cancelTasks } from "../store/lifecycle/index.js";
import { actorText, recordAudit, type AuditActor } from "../store/audit.js";
import { candidateCount, MISSED_AFTER_MS, ticksToRun } from "./catch-up.js";
import { CronSchedule } from "./cron.js";
import { tickTask } from "./tick-task.js";
import { evaluateKeyTemplate, parseKeyTemplate } from "../key-template.js";
import { keyTemplates } from "../store/queues.js";

/** Where the scheduler reads the time; tests inject a fixed or stepped one. */
export interface Clock {
  now(): Date;
}

/** Wall-clock time. */
export const systemClock: Clock = { now: () => new Date() };

/** What a scheduler needs. */
export interface SchedulerDeps {
  db: Db;
  registry: PluginRegistry;
  /** The task types registered in PostgreSQL, which ticks are validated against; built over `registry` when not given. */
  catalog?: TaskTypeCatalog;
  logger: Logger;
  /** The process's listener, for wake-ups when schedules change; without it the loop re-checks every maxSleepMs. */
  listener?: Listener;
  clock?: Clock;
  /** A tick reached later than this counts as missed (see catch-up.ts). */
  missedAfterMs?: number;
  /** Longest sleep between checks: the fallback for a notification lost while disconnected. */
  maxSleepMs?: number;
  /** Test hook: runs inside a schedule's tick transaction after its tasks are written, before commit. */
  beforeCommit?: (trx: Kysely<Database>, schedule: ScheduleRow) => Promise<void>;
}

const iso = (d: Date) => d.toISOString();

/** How recently a worker must have heartbeated to count as serving a type (the default lease). */
const DEFAULT_LIVE_MS = 15_000;

/** The wait after failed passes in a row (the database away, mostly). */
const PASS_BACKOFF: BackoffPolicy = { baseMs: 500, maxMs: 10_000 };

/** Failed tick transactions in a row (database reachable) after which the tick is skipped. */
export const MAX_TICK_FAILURES = 3;

/**
 * Turns schedule ticks into tasks. Every server and worker process runs one; they need no
 * coordination beyond PostgreSQL: each due schedule is claimed with FOR UPDATE SKIP LOCKED, and the
 * tick's task, its history row and its job are inserted, and next_run_at advanced, in that one
 * transaction. A process that dies mid-tick rolls back and the tick stays due for whichever
 * process comes next; the unique (schedule_id, scheduled_at) key on tasks is the backstop that
 * makes a second task for the same tick impossible whatever happens to the claim.
 */
export class Scheduler {
  private readonly clock: Clock;
  private readonly maxSleepMs: number;
  private stopped = false;
  private woken = false;
  private wakeSleeper: (() => void) | undefined;
  private unsubscribe: (() => void) | undefined;
  private loopDone: Promise<void> | undefined;
  /** Consecutive failed transactions per schedule id (see afterFailedTick). */
  private readonly failures = new Map<string, number>();
  private readonly catalog: TaskTypeCatalog;

  constructor(private readonly deps: SchedulerDeps) {
    this.clock = deps.clock ?? systemClock;
    this.maxSleepMs = deps.maxSleepMs ?? 10_000;
    this.catalog = deps.catalog ?? new TaskTypeCatalog({ db: deps.db.kysely, local: deps.registry, liveMs: DEFAULT_LIVE_MS });
  }

  /** Runs the loop in the background: handle due ticks, sleep until the next one (or a change). */
  start(): void {
    if (this.loopDone) return;
    // Also wake once listening: a schedule created before (or while reconnecting) sent its notification to no one.
    this.unsubscribe = this.deps.listener?.subscribe(SCHEDULES_CHANNEL, () => this.wake(), () => this.wake());
    this.loopDone = this.loop();
  }

  /** Stops the loop; a tick transaction in progress commits or rolls back first. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    this.unsubscribe?.();
    await this.loopDone;
  }

  /** Handles every tick due now, one schedule per transaction; returns how many schedules it handled. */
  async runDue(): Promise<number> {
    let handled = 0;
    for (;;) {
      const now = this.clock.now();
      let current: ScheduleRow | undefined;
      try {
        const claimed = await this.deps.db.kysely.transaction().execute(async (trx) => {
          current = await claimDueSchedule(trx, now);
          if (!current) return false;
          await recordTicks(trx, current.id, await this.handleDue(trx, current, now));
          await this.deps.beforeCommit?.(trx, current);
          return true;
        });
        if (!claimed) return handled;
        if (current) this.failures.delete(current.id);
      } catch (err) {
        if (!current || isDatabaseUnavailable(err)) throw err;
        await this.afterFailedTick(current, now, err);
      }
      handled += 1;
    }
  }

  /**
   * A tick whose transaction failed for a reason other than the database being away is retried on
   * the next passes; one that keeps failing would fail every pass and hold up every schedule due
   * after it, so after MAX_TICK_FAILURES in a row it is recorded and the schedule moves on.
   */
  private async afterFailedTick(schedule: ScheduleRow, now: Date, err: unknown): Promise<void> {
    const failures = (this.failures.get(schedule.id) ?? 0) + 1;
    const logger = this.deps.logger.child({ component: "scheduler", schedule: schedule.name });
    if (failures < MAX_TICK_FAILURES) {
      this.failures.set(schedule.id, failures);
      logger.warn({ err: errorMessage(err), failures }, "tick failed; it stays due");
      throw err;
    }
    this.failures.delete(schedule.id);
    const next = new CronSchedule(schedule.cron, schedule.time_zone).next(now) ?? null;
    const note = `tick ${iso(schedule.next_run_at!)} failed ${failures} times, skipped: ${errorMessage(err)}`;
    logger.error({ err: errorMessage(err), nextRunAt: next }, "tick keeps failing; skipped");
    await skipFailedTick(this.deps.db.kysely, schedule.id, schedule.next_run_at!, next, note);
  }

  private async loop(): Promise<void> {
    const logger = this.deps.logger.child({ component: "scheduler" });
    const failures = new Backoff(PASS_BACKOFF);
    while (!this.stopped) {
      let sleepMs = this.maxSleepMs;
      try {
        await this.runDue();
        const next = await nextDueAt(this.deps.db.kysely);
        if (next) {
          const untilDue = next.getTime() - this.clock.now().getTime();
          // Due yet not claimable: another process holds it mid-tick. Look again shortly, not in a spin.
          sleepMs = Math.min(sleepMs, untilDue > 0 ? untilDue : 100);
        }
        failures.succeeded();
      } catch (err) {
        // Mostly the database being unavailable: nothing was committed, so the ticks stay due.
        sleepMs = failures.failed();
        logger.warn({ err: errorMessage(err), retryInMs: sleepMs }, "scheduler pass failed; retrying");
      }
      await this.sleep(sleepMs);
    }
  }

  private wake(): void {
    this.woken = true;
    this.wakeSleeper?.();
  }

  /** Sleeps for `ms` or until woken; a wake-up that arrived while working ends the next sleep at once. */
  private sleep(ms: number): Promise<void> {
    if (this.woken || this.stopped) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakeSleeper = undefined;
        this.woken = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeSleeper = done;
    });
  }

  /** Runs the ticks of a claimed schedule that its catch-up policy keeps, and finds its next tick. */
  private async handleDue(trx: Kysely<Database>, schedule: ScheduleRow, now: Date): Promise<TickOutcome> {
    const logger = this.deps.logger.child({ component: "scheduler", schedule: schedule.name });
    let cron: CronSchedule;
    try {
      cron = new CronSchedule(schedule.cron, schedule.time_zone);
    } catch (err) {
      // Validated at create; only a runtime without the zone (or a library change) gets here.
      return { nextRunAt: null, note: `cannot compute ticks: ${errorMessage(err)}` };
    }
    const catchUp = { policy: schedule.catch_up, backfillLimit: schedule.backfill_limit };
    // From just before next_run_at, so the pending tick itself is among the candidates.
    const missedAfterMs = this.deps.missedAfterMs ?? MISSED_AFTER_MS;
    const due = cron.ticksBetween(new Date(schedule.next_run_at!.getTime() - 1), now, candidateCount(catchUp, missedAfterMs));
    const run = ticksToRun(catchUp, due, now, missedAfterMs);
    let outcome: TickOutcome = { nextRunAt: cron.next(now) ?? null, note: null };
    const dropped = due.filter((t) => !run.includes(t));
    if (dropped.length > 0) {
      outcome.note = `missed tick ${iso(dropped.at(-1)!)} skipped (catch-up: ${schedule.catch_up})`;
      logger.info({ lastDropped: dropped.at(-1), dropped: dropped.length }, "missed ticks skipped");
    }
    for (const tick of run) {
      const result = await this.runTick(trx, schedule, tick);
      outcome = { ...outcome, created: result.created ?? outcome.created, note: result.created ? null : result.note };
      if (result.created) logger.debug({ tick, taskId: result.created.taskId }, "tick created a task");
      else logger.info({ tick, note: result.note }, "tick created no task");
    }
    return outcome;
  }

  private async runTick(trx: Kysely<Database>, schedule: ScheduleRow, tick: Date): Promise<Pick<TickOutcome, "created" | "note">> {
    // What the tick changes is audited in its transaction, as the schedule's doing.
    const actor: AuditActor = { actor: `schedule:${schedule.name}`, role: null };
    let cancelled: string[] = [];
    let reason: string | null = null;
    const auditCancelled = async () => {
      if (cancelled.length > 0) await recordAudit(trx, actor, [{ action: "cancel", resources: { tasks: cancelled, schedule: schedule.name }, reason }]);
    };
    if (schedule.overlap !== "allow") {
      const open = await unfinishedScheduleTasks(trx, schedule.id);
      if (open.length > 0 && schedule.overlap === "skip") {
        const ids = open.map((t) => t.id).join(", ");
        return { note: `tick ${iso(tick)} skipped: task ${ids} has not finished (overlap: skip)` };
      }
      reason = `superseded by the tick at ${iso(tick)} of schedule "${schedule.name}" (overlap: cancel_previous)`;
      cancelled = (await cancelTasks(trx, open.map((t) => t.id), { details: `cancelled by ${actorText(actor)}`, reason })).map((r) => r.id);
    }
    let task;
    try {
      task = await this.catalog.withTypes([schedule.type], (types) => tickTask(schedule, types, tick));
      if (!task.key) {
        // Without a key of its own, the tick's task gets the one its queue's key template derives.
        const queue = task.queue ?? "default";
        const template = (await keyTemplates(trx, [queue])).get(queue);
        if (template !== undefined) {
          const derived = evaluateKeyTemplate(parseKeyTemplate(template), task.parameters, "task.parameters");
          if ("error" in derived) throw InvalidArgumentError.of(derived.field, derived.error);
          task = { ...task, key: derived.key };
        }
      }
    } catch (err) {
      if (err instanceof InvalidArgumentError || err instanceof TaskTypeDisabledError) {
        await auditCancelled();
        return { note: `tick ${iso(tick)}: ${err.message}` };
      }
      throw err;
    }
    const [row] = await insertTasksInTransaction(trx, [task]);
    if (row) {
      const parameters = { scheduledAt: tick.toISOString(), type: row.type, queue: row.queue, ...(cancelled.length > 0 ? { cancelledPrevious: cancelled } : {}) };
      await recordAudit(trx, actor, [{ action: "create", resources: { tasks: [row.id], schedule: schedule.name }, parameters, reason }]);
    } else {
      await auditCancelled();
    }
    // Nothing inserted: the tick already has its task (the unique key); report that one.
    const taskId = row?.id ?? (await findTickTask(trx, schedule.id, tick))?.id;
    return taskId ? { created: { taskId, scheduledAt: tick }, note: null } : { note: `tick ${iso(tick)}: no task` };
  }
}
