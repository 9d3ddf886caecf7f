/**
 * Write-behind recording of attempt outcomes (river's batch completer): a finished attempt hands
 * its outcome here and its graphile-worker slot takes the next job at once; outcomes are flushed
 * every `flushMs` in one guarded statement per batch (store/lifecycle recordOutcomes), each with
 * its own history row.
 *
 * The window between the attempt's end and the flush is the at-least-once case the design already
 * has: the attempt stays in the worker's in-flight set (its heartbeat keeps the lease) until its
 * outcome is recorded, and if the process dies first, the task is RUNNING under a dead worker, so
 * the reconciler records a lost attempt and retries it (docs/design/fencing.md). Nothing is lost,
 * and nothing is recorded twice: the guard (RUNNING, this attempt, this owner) admits one outcome.
 */
import { recordOutcomes, type OutcomeRecord } from "../store/lifecycle/index.js";
import type { Db } from "../store/db.js";
import { GroupCommit } from "../store/group-commit.js";
import type { TaskRow } from "../store/schema.js";

/** Most outcomes one flush statement carries. */
const MAX_BATCH = 500;

/** Batches outcomes into recordOutcomes statements; see the module comment. */
export class OutcomeWriter {
  private readonly batches: GroupCommit<OutcomeRecord, TaskRow | undefined>;
  private readonly settling = new Set<Promise<unknown>>();

  constructor(db: Db, flushMs: number) {
    this.batches = new GroupCommit((records) => recordOutcomes(db, records), { maxBatch: MAX_BATCH, maxInFlight: 2, delayMs: flushMs });
  }

  /** Records one outcome with the next batch: the recorded row, or undefined if the attempt was settled by someone else. */
  record(entry: OutcomeRecord): Promise<TaskRow | undefined> {
    return this.batches.write(entry);
  }

  /** Keeps track of an attempt's write-behind tail (record, log, metrics), so a stop can wait for it. */
  track(tail: Promise<unknown>): void {
    this.settling.add(tail);
    void tail.finally(() => this.settling.delete(tail));
  }

  /** Attempts whose outcome is not recorded yet. */
  get pending(): number {
    return this.settling.size;
  }

  /**
   * Flushes what waits for the next batch now (not at its timer) and resolves once every tracked
   * outcome is recorded (or spooled, if the stop signal ended an outage wait).
   */
  async drained(): Promise<void> {
    while (this.settling.size > 0) {
      await Promise.allSettled([this.batches.drained(), ...this.settling]);
    }
  }
}
