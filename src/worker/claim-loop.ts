/**
 * A worker process's own fetch loop for task attempts, in place of graphile-worker's worker for
 * run_task jobs (graphile-worker still enqueues, keeps the jobs table and runs the cron jobs).
 *
 * graphile-worker's worker costs a task three statements of its own around our claim: it locks the
 * job when it fetches it (an UPDATE), hands it to a slot, and completes it when the handler returns
 * (a DELETE, one round trip per job; 0.17's batched completion shuts the pool down after one failed
 * batch, see docs/design/hot-path.md). Here one statement takes the best jobs, starts their
 * attempts and deletes the jobs (store/lifecycle claimNextAttempts), and nothing more is written
 * for the job: a task costs that claim and its share of an outcome batch.
 *
 * One claim statement is in flight at a time; whatever slots free up meanwhile go in the next, so
 * slots that free together are filled together. A claim runs when there may be work and a free
 * slot: at start, when a slot frees, after a full batch, and when nudged (a job was inserted, one
 * comes due, a queue was resumed, the poll). An idle process claims at the next turn of the event
 * loop, so a lone task waits for no timer. A claim that fails is retried with backoff (the database
 * may be away); a claim whose answer was lost leaves its tasks RUNNING under this live worker, but
 * not in flight here, so their leases run out and the reconciler retries them (at least once).
 */
import { setMaxListeners } from "node:events";
import { Backoff } from "../backoff.js";
import { errorMessage, isDatabaseUnavailable } from "../errors.js";
import type { Logger } from "../logger.js";
import { claimKeyedAttempts, claimNextAttempts, claimRateLimitedAttempt } from "../store/lifecycle/index.js";
import { msToNextUnit } from "../store/rate-limits.js";
import { OUTAGE_BACKOFF, type Db } from "../store/db.js";
import type { TaskRow } from "../store/schema.js";
import { labeledRunTaskPrefix, queueFlag, runTaskIdentifier } from "../store/jobs.js";
import { KEYED_TURNS, UNKEYED_BATCH, type QueueGate } from "./queue-gate.js";

/** What the loop needs: how to claim up to `limit` attempts, and how to run one. */
export interface ClaimLoopOptions {
  slots: number;
  /** Claims up to `limit` attempts; each returned row is RUNNING and this process's. */
  claim: (limit: number) => Promise<TaskRow[]>;
  /** Runs a claimed attempt until its slot is free again; `shutdown` fires when the grace period is over. */
  run: (task: TaskRow, shutdown: AbortSignal) => Promise<void>;
  logger: Logger;
}

/** Runs a process's slots; see the module comment. */
export class ClaimLoop {
  private busy = 0;
  private claiming = false;
  private wanted = true;
  private started = false;
  private stopped = false;
  private readonly failures = new Backoff(OUTAGE_BACKOFF);
  private retry: NodeJS.Timeout | undefined;
  private readonly shutdown = new AbortController();
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly options: ClaimLoopOptions) {
    // Every running attempt listens on the one shutdown signal.
    setMaxListeners(options.slots + 10, this.shutdown.signal);
  }

  /** Attempts running in a slot now. */
  get running(): number {
    return this.busy;
  }

  /** Starts claiming. */
  start(): void {
    this.started = true;
    this.schedule();
  }

  /** There may be jobs to take (inserted, come due, a queue resumed, the poll): claim soon. */
  nudge(): void {
    this.wanted = true;
    this.schedule();
  }

  /**
   * Graceful stop: claim nothing more, let running attempts finish within `graceMs`, then fire their
   * shutdown signal (they are recorded as interrupted and retried) and wait for them to end.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    const timer = setTimeout(() => this.shutdown.abort(), graceMs);
    await this.idle();
    clearTimeout(timer);
  }

  private schedule(): void {
    if (!this.started || this.stopped || this.claiming || !this.wanted || this.retry || this.busy >= this.options.slots) return;
    this.claiming = true;
    setImmediate(() => void this.round());
  }

  private async round(): Promise<void> {
    this.wanted = false;
    let retryInMs = 0;
    try {
      const free = this.options.slots - this.busy;
      const tasks = await this.options.claim(free);
      this.failures.succeeded();
      for (const task of tasks) this.runInSlot(task);
      // A full batch: more may be waiting (claimed once a slot frees, which nudges anyway).
      if (tasks.length >= free) this.wanted = true;
    } catch (err) {
      retryInMs = this.failures.failed();
      const away = isDatabaseUnavailable(err);
      const message = away ? "database unavailable while claiming attempts; retrying" : "claiming attempts failed; retrying";
      this.options.logger[away ? "warn" : "error"]({ err: errorMessage(err), retryInMs }, message);
      this.wanted = true;
    } finally {
      this.claiming = false;
      if (retryInMs > 0 && !this.stopped) {
        this.retry = setTimeout(() => {
          this.retry = undefined;
          this.schedule();
        }, retryInMs);
      } else this.schedule();
      this.settleIdle();
    }
  }

  private runInSlot(task: TaskRow): void {
    this.busy++;
    this.options
      .run(task, this.shutdown.signal)
      .catch((err: unknown) => this.options.logger.error({ taskId: task.id, err: errorMessage(err) }, "an attempt ended with an unexpected error"))
      .finally(() => {
        this.busy--;
        this.nudge();
        this.settleIdle();
      });
  }

  private idle(): Promise<void> {
    if (this.busy === 0 && !this.claiming) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private settleIdle(): void {
    if (this.busy > 0 || this.claiming) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    waiters.forEach((resolve) => resolve());
  }
}

/**
 * The claim of a process that serves `queues` and runs `types`: the unlimited queues' unkeyed jobs
 * in one batch, then their keyed tasks in their keys' turns (one statement), then each key-limited
 * queue's keyed tasks (one statement each), then each limited queue's one statement at a time while
 * slots remain (its gate admits one per statement); held queues not at all, and a claim that had
 * less to start than asked (the batch included) not again until woken (see QueueGate). The keyed
 * claims run only while slots remain, so a process with no keyed tasks pays one empty statement
 * per wake-up at most, and one draining keyed tasks does not ask the batch each time.
 *
 * `labels` (sorted "key=value" pairs, src/labels.ts): every statement takes only tasks whose
 * required labels are among them (none: only tasks without labels, whose jobs alone it reads).
 */
export function claimFor(
  db: Db,
  workerId: string,
  gate: QueueGate,
  queues: string[],
  types: string[],
  wakeAt: (epochMs: number) => void = () => {},
  labels: string[] = [],
): (limit: number) => Promise<TaskRow[]> {
  // Unkeyed jobs only: keyed tasks are claimed by claimKeyedAttempts, which finds their jobs by job key.
  const byQueue = new Map(queues.map((q) => [q, types.map((t) => runTaskIdentifier(q, t))]));
  const all = [...byQueue.values()].flat();
  // A process with labels also reads the labeled jobs of its queues and types whose labels it has.
  const onLabels = (qs: string[], ts: string[]) => (labels.length === 0 ? {} : { labels, labeledPrefixes: qs.flatMap((q) => ts.map((t) => labeledRunTaskPrefix(q, t))) });
  return async (limit) => {
    // Wakes after this point (a job inserted meanwhile) keep a queue that finds nothing from going quiet.
    const since = gate.wakeCount;
    const view = await gate.current();
    const claimed: TaskRow[] = [];
    // Tasks under a rate limit are left out of the batch (their queue's flag, their type's identifiers): the SQL refuses them anyway.
    const rateQueues = view.rateLimits.flatMap((l) => (l.queue === null ? [] : [l.queue]));
    const rateTypes = new Set(view.rateLimits.flatMap((l) => (l.taskType === null ? [] : [l.taskType])));
    const identifiers = rateTypes.size === 0 ? all : queues.flatMap((q) => types.filter((t) => !rateTypes.has(t)).map((t) => runTaskIdentifier(q, t)));
    const unrated = types.filter((t) => !rateTypes.has(t));
    if (!gate.isQuiet(UNKEYED_BATCH)) {
      const batch = { identifiers, forbiddenFlags: [...view.limited, ...rateQueues].map(queueFlag), limit, ...onLabels(queues, unrated) };
      claimed.push(...(await claimNextAttempts(db, workerId, batch)));
      if (claimed.length < limit) gate.quiet(UNKEYED_BATCH, since);
    }
    const keyed = async (name: string, keyedQueues: string[], keyLimited: boolean) => {
      const want = limit - claimed.length;
      if (want <= 0 || keyedQueues.length === 0 || gate.isQuiet(name)) return;
      const got = await claimKeyedAttempts(db, workerId, { queues: keyedQueues, types, limit: want, keyLimited, labels });
      claimed.push(...got);
      if (got.length < want) gate.quiet(name, since);
    };
    await keyed(KEYED_TURNS, queues.filter((q) => !view.limited.includes(q) && !view.keyLimited.includes(q)), false);
    for (const queue of view.keyLimited) await keyed(queue, [queue], true);
    for (const queue of view.limited) {
      if (view.held.has(queue) || gate.isQuiet(queue)) continue;
      const identifiers = byQueue.get(queue) ?? [];
      // Its unkeyed and keyed tasks by turns, one per statement each (the gates admit one per statement).
      let unkeyedLeft = true;
      let keyedLeft = true;
      while (claimed.length < limit && (unkeyedLeft || keyedLeft)) {
        if (unkeyedLeft) {
          const [one] = await claimNextAttempts(db, workerId, { identifiers, forbiddenFlags: [], limit: 1, limitedQueue: queue, ...onLabels([queue], types) });
          if (one) claimed.push(one);
          else unkeyedLeft = false;
        }
        if (keyedLeft && claimed.length < limit) {
          const [one] = await claimKeyedAttempts(db, workerId, { queues: [queue], types, limit: 1, keyLimited: true, queueLimited: true, labels });
          if (one) claimed.push(one);
          else keyedLeft = false;
        }
      }
      // Nothing waiting, or the queue (or every waiting key) is full: not asked again until a job may have arrived or a slot freed.
      if (!unkeyedLeft && !keyedLeft) gate.quiet(queue, since);
    }
    // Each rate limit's tasks, one per statement, each taking a unit of its bucket; out of units (or
    // nothing waiting): quiet until woken, and a wake-up scheduled for its next unit.
    for (const rate of view.rateLimits) {
      const name = `*rate:${rate.name}`;
      if (gate.isQuiet(name)) continue;
      let one: TaskRow | undefined;
      while (claimed.length < limit && (one = await claimRateLimitedAttempt(db, workerId, { limit: rate.name, queues, types, labels, perKey: rate.perKey }))) claimed.push(one);
      if (claimed.length < limit) {
        gate.quiet(name, since);
        const ms = await msToNextUnit(db.kysely, rate.name, queues, types);
        // A unit there but nothing started (its queue or key full, its job held by another claim): an attempt ending wakes it.
        if (ms !== undefined && ms > 0) wakeAt(Date.now() + ms);
      }
    }
    return claimed;
  };
}
