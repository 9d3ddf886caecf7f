import type { Kysely } from "kysely";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import { heldQueues } from "../store/queues.js";
import type { Database } from "../store/schema.js";
import { queueFlag } from "./jobs.js";

/** How long a worker process trusts its view of which queues are held (paused or full). */
export const HELD_QUEUES_TTL_MS = 250;

/**
 * A worker process's view of which of its queues are held (paused, or at their concurrency limit),
 * as graphile-worker job flags to forbid (its `forbiddenFlags` option), so the jobs of a held queue
 * stay in the database instead of being fetched, refused and put back over and over.
 *
 * The view is advisory and a little stale (at most HELD_QUEUES_TTL_MS, and refreshed at once when a
 * queue's settings change, a claim was refused, or an attempt in a limited queue ended here): the
 * claim's SQL gate (task_queue_admits) is what guarantees limits and pauses. Answers null when no
 * queue is held, so graphile-worker keeps fetching in batches through its local queue (it fetches
 * one job at a time while any flag is forbidden).
 */
export class QueueGate {
  private flags: string[] = [];
  private limited = new Set<string>();
  private fetchedAt = 0;
  private pending: Promise<string[] | null> | undefined;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly queues: string[],
    private readonly logger: Logger,
  ) {}

  /** graphile-worker's forbiddenFlags: synchronous while the view is fresh. */
  forbiddenFlags = (): string[] | null | Promise<string[] | null> => {
    if (Date.now() - this.fetchedAt < HELD_QUEUES_TTL_MS) return this.current();
    return (this.pending ??= this.refresh().finally(() => (this.pending = undefined)));
  };

  /** The flags forbidden as of the last refresh (for the claim's priority re-check). */
  forbidden(): string[] {
    return this.flags;
  }

  /** Whether the queue had a concurrency limit or was paused at the last refresh. */
  isLimited(queue: string): boolean {
    return this.limited.has(queue);
  }

  /** Forget the view: the next fetch reads it again. */
  invalidate(): void {
    this.fetchedAt = 0;
  }

  private current(): string[] | null {
    return this.flags.length > 0 ? this.flags : null;
  }

  private async refresh(): Promise<string[] | null> {
    try {
      const { held, limited } = await heldQueues(this.db, this.queues);
      this.flags = held.map(queueFlag);
      this.limited = new Set(limited);
      this.fetchedAt = Date.now();
    } catch (err) {
      // Keep the last view; graphile-worker's own fetch reports the outage.
      this.logger.debug({ err: errorMessage(err) }, "could not read queue settings");
    }
    return this.current();
  }
}
