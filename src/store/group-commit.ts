/**
 * Group commit: concurrent single writes of the same kind are coalesced into one statement, so many
 * small calls cost what one batched call costs (one round trip, one commit). A write waits for no
 * timer when the database is idle: the first one goes out at the next turn of the event loop (with
 * whatever arrived in the same turn); writes that arrive while `maxInFlight` flushes are running
 * queue up and go together in the next one. With `delayMs` > 0 a flush also waits that long for
 * company (write-behind batching, where a little latency is the point).
 *
 * Each caller gets its own result or error: when a batch statement fails for a reason other than
 * the database being unreachable, every write in it is retried alone, so one bad write cannot fail
 * its neighbours (graphile-worker's completeJobs and river's batch completer do the same fallback).
 */
import { isDatabaseUnavailable } from "../errors.js";

/** How a GroupCommit batches. */
export interface GroupCommitOptions {
  /** Most writes per statement. */
  maxBatch: number;
  /** Statements in flight at once; more writes wait and join the next one. */
  maxInFlight: number;
  /** How long a flush waits for more writes after the first one arrives (0: the next event-loop turn). */
  delayMs?: number;
}

interface Pending<I, O> {
  item: I;
  resolve(value: O): void;
  reject(err: unknown): void;
}

/** Coalesces `write(item)` calls into `flush(items)` calls that return one result per item, in order. */
export class GroupCommit<I, O> {
  private queue: Pending<I, O>[] = [];
  private inFlight = 0;
  private scheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly idle = new Set<() => void>();

  constructor(
    private readonly flush: (items: I[]) => Promise<O[]>,
    private readonly options: GroupCommitOptions,
  ) {}

  /** Writes one item with the next batch; resolves with its own result. */
  write(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  /** Writes waiting or in flight. */
  get pending(): number {
    return this.queue.length + this.inFlight;
  }

  /** Resolves once nothing is waiting or in flight; writes waiting for a `delayMs` timer go at once. */
  async drained(): Promise<void> {
    if (this.pending === 0) return;
    const done = new Promise<void>((resolve) => this.idle.add(resolve));
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.scheduled = false;
      this.startFlush();
    }
    await done;
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.options.maxInFlight || this.queue.length === 0) return;
    this.scheduled = true;
    const go = () => {
      this.scheduled = false;
      this.timer = undefined;
      this.startFlush();
    };
    if (this.options.delayMs && this.options.delayMs > 0) this.timer = setTimeout(go, this.options.delayMs);
    else setImmediate(go);
  }

  private startFlush(): void {
    if (this.inFlight >= this.options.maxInFlight || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.options.maxBatch);
    this.inFlight++;
    void this.run(batch).finally(() => {
      this.inFlight--;
      if (this.queue.length > 0) this.schedule();
      else if (this.inFlight === 0) for (const resolve of this.idle) this.idle.delete(resolve), resolve();
    });
    // A full batch left more behind: another flush may start now if there is room.
    if (this.queue.length > 0) this.schedule();
  }

  private async run(batch: Pending<I, O>[]): Promise<void> {
    try {
      const results = await this.flush(batch.map((p) => p.item));
      if (results.length !== batch.length) throw new Error(`a batch of ${batch.length} writes returned ${results.length} results`);
      batch.forEach((p, i) => p.resolve(results[i]!));
    } catch (err) {
      if (batch.length === 1 || isDatabaseUnavailable(err)) {
        for (const p of batch) p.reject(err);
        return;
      }
      // One write may be at fault: give each its own statement, and so its own answer.
      await Promise.all(
        batch.map((p) =>
          this.flush([p.item]).then(
            (results) => (results.length === 1 ? p.resolve(results[0]!) : p.reject(new Error(`a write returned ${results.length} results`))),
            (e: unknown) => p.reject(e),
          ),
        ),
      );
    }
  }
}
