/**
 * Group commit of a worker process's claims: the jobs graphile-worker's local queue hands to its
 * slots arrive together, and each would otherwise cost a statement and a commit of its own. Claims
 * that arrive while a claim statement is in flight go together in the next one
 * (store/attempts.ts claimAttempts), each row still guarded and with its own history row. An idle
 * process claims at the next turn of the event loop, so a lone task waits for no timer.
 *
 * Claims in a queue with a concurrency limit (or paused) go one by one through claimAttempt, whose
 * gate locks the queue's row and counts its RUNNING tasks per claim: a batch would count once and
 * could overshoot the limit. The worker's view of which queues are limited is advisory; the batch
 * statement refuses a row whose queue is limited whatever that view says, and a row the batch
 * refused for any reason is claimed again alone, where the full guard decides (and claimRefusal
 * can say why it waits).
 */
import { claimAttempt, claimAttempts, type ClaimContext, type ClaimRequest } from "../store/attempts.js";
import type { Db } from "../store/db.js";
import { GroupCommit } from "../store/group-commit.js";
import type { TaskRow } from "../store/schema.js";

/** Most claims one statement carries (a process's slots bound it well before this). */
const MAX_BATCH = 200;

/** One claim: the job being handled, its queue, and the claim context (for a claim made alone). */
export interface Claim extends Omit<ClaimRequest, "jobPriority"> {
  queue: string;
  context: ClaimContext;
}

/** Coalesces a worker process's claims; see the module comment. */
export class ClaimBatcher {
  private readonly batches: GroupCommit<ClaimRequest, TaskRow | undefined>;

  /**
   * `processContext` is what every claim of this process shares (the identifiers it serves, the
   * flags it does not fetch now), read when a batch goes out; `isLimited` is its view of the queues.
   */
  constructor(
    private readonly db: Db,
    private readonly workerId: string,
    processContext: () => Omit<ClaimContext, "jobPriority">,
    private readonly isLimited: (queue: string) => boolean,
  ) {
    // One statement in flight: what arrives meanwhile waits for it and goes in the next, together.
    this.batches = new GroupCommit((claims) => claimAttempts(db, workerId, claims, processContext()), { maxBatch: MAX_BATCH, maxInFlight: 1 });
  }

  /** Claims one attempt: the RUNNING row, or undefined when it may not start (see claimAttempt). */
  async claim(c: Claim): Promise<TaskRow | undefined> {
    const single = () => claimAttempt(this.db, c.taskId, c.attempt, this.workerId, c.jobId, c.context);
    if (this.isLimited(c.queue)) return single();
    const claimed = await this.batches.write({ taskId: c.taskId, attempt: c.attempt, jobId: c.jobId, jobPriority: c.context.jobPriority });
    return claimed ?? single();
  }
}
