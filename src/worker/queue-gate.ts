import type { Kysely } from "kysely";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import { heldQueues } from "../store/queues.js";
import { rateLimitsOf, type RateLimit } from "../store/rate-limits.js";
import type { Database } from "../store/schema.js";

/** How long a worker process trusts its view of which queues are held (paused or full). */
export const HELD_QUEUES_TTL_MS = 250;

/** A worker process's view of its queues that have a limit or a pause (see QueueGate). */
export interface QueueView {
  /** Queues with a concurrency limit, or paused: claimed one job per statement, through their gate. */
  limited: string[];
  /** Of those, the ones that may start nothing now (paused, or at their limit): not fetched at all. */
  held: Set<string>;
  /** Queues (not paused nor limited) with a limit per key: their keyed tasks are claimed queue by queue. */
  keyLimited: string[];
  /** Rate limits over any of the process's queues or types: their tasks are claimed one per statement, each taking a unit. */
  rateLimits: RateLimit[];
}

/** The quiet-set name of the keyed claim of the queues without key limits (not a queue name: they have no '*'). */
export const KEYED_TURNS = "*keyed";

/** The quiet-set name of the batch claim of unkeyed tasks. */
export const UNKEYED_BATCH = "*batch";

/**
 * A worker process's view of which of its queues are limited (a concurrency limit, or paused) and
 * which of those are held (paused, or at their limit). The fetch loop takes the jobs of unlimited
 * queues in batches, those of a limited queue one at a time, and those of a held queue not at all,
 * so they stay in the database instead of being taken, refused and put back over and over.
 *
 * The view is advisory and a little stale (at most HELD_QUEUES_TTL_MS, and refreshed at once when a
 * queue's settings change or an attempt in a limited queue ended here): the claim's SQL gate (task_queue_admits, and the batch's refusal of every limited
 * queue) is what guarantees limits and pauses.
 */
export class QueueGate {
  private view: QueueView = { limited: [], held: new Set(), keyLimited: [], rateLimits: [] };
  private fetchedAt = 0;
  private pending: Promise<QueueView> | undefined;
  private readonly quietQueues = new Set<string>();
  private wakes = 0;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly queues: string[],
    private readonly logger: Logger,
    private readonly types: string[] = [],
  ) {}

  /** The view, read again when it is older than HELD_QUEUES_TTL_MS (or was invalidated). */
  current(): QueueView | Promise<QueueView> {
    if (Date.now() - this.fetchedAt < HELD_QUEUES_TTL_MS) return this.view;
    return (this.pending ??= this.refresh().finally(() => (this.pending = undefined)));
  }

  /**
   * Whether the queue had a concurrency limit, a limit per key, or was paused at the last refresh:
   * its attempts' outcomes are recorded before their slot is given back, and their end wakes the claim.
   */
  isLimited(queue: string): boolean {
    return this.view.limited.includes(queue) || this.view.keyLimited.includes(queue) || this.view.rateLimits.some((l) => l.queue === queue);
  }

  /** Forget the view: the next fetch reads it again (and asks every limited queue again). */
  invalidate(): void {
    this.fetchedAt = 0;
    this.wakes++;
    this.quietQueues.clear();
  }

  /**
   * A limited queue whose claim started nothing (empty, or full): not asked again until something
   * may have changed it (wake, invalidate), so the slots of other queues freeing up do not cost a
   * statement per limited queue each. The same for a key-limited queue's keyed claim, for
   * KEYED_TURNS, the keyed claim of the other queues, and for UNKEYED_BATCH, the batch.
   */
  quiet(queue: string, since: number): void {
    // A wake that came while the claim that found nothing was in flight may have been for this
    // queue: the claim's answer predates it, so the queue stays to be asked again.
    if (since !== this.wakes) return;
    this.quietQueues.add(queue);
  }

  /** Wakes so far: a claim notes it before its statements and passes it to quiet(). */
  get wakeCount(): number {
    return this.wakes;
  }

  isQuiet(queue: string): boolean {
    return this.quietQueues.has(queue);
  }

  /** Jobs may have arrived or come due (a notification, a due time, the poll): ask every limited queue again. */
  wake(): void {
    this.wakes++;
    this.quietQueues.clear();
  }

  private async refresh(): Promise<QueueView> {
    try {
      const [{ held, limited, keyLimited }, rateLimits] = await Promise.all([heldQueues(this.db, this.queues), rateLimitsOf(this.db, this.queues, this.types)]);
      this.view = { limited, held: new Set(held), keyLimited, rateLimits };
      this.fetchedAt = Date.now();
    } catch (err) {
      // Keep the last view; the fetch itself reports the outage.
      this.logger.debug({ err: errorMessage(err) }, "could not read queue settings");
    }
    return this.view;
  }
}
