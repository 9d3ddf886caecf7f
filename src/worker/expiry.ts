/**
 * A worker process's expiry part: records EXPIRED every task that was never started and is past its
 * deadline (CreateTask expire_after, or its queue's default), within a second of the deadline. A
 * claim never starts such a task (store/lifecycle claimNextAttempts), so this part only has to say
 * so, with the history row and the job removed. It sleeps until the earliest deadline it knows of,
 * at most EXPIRY_CHECK_MS, so a task created meanwhile with a nearer deadline is caught in time.
 * Every worker process runs it, and every API server process (api/upkeep.ts); two passes racing
 * skip each other's rows.
 */
import { errorMessage, isDatabaseUnavailable } from "../errors.js";
import { expireOverdue, msToNextExpiry } from "../store/lifecycle/index.js";
import type { WorkerContext, WorkerPart } from "./runner.js";

/** The longest a pass waits for the next one: deadlines are kept within this (plus a pass). */
export const EXPIRY_CHECK_MS = 500;
/** Tasks expired per statement; a pass repeats while a statement is full. */
const EXPIRY_BATCH = 500;

/** See the module comment. */
export class Expiry implements WorkerPart {
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly ctx: Pick<WorkerContext, "db" | "logger">) {}

  async start(): Promise<void> {
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.pass;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => (this.pass = this.run().finally(() => (this.pass = undefined))), ms);
  }

  private async run(): Promise<void> {
    const { db, logger } = this.ctx;
    let wait = EXPIRY_CHECK_MS;
    try {
      for (;;) {
        const expired = await expireOverdue(db.kysely, EXPIRY_BATCH);
        if (expired.length > 0) logger.info({ tasks: expired.map((t) => t.id) }, "tasks expired: not started by their deadline");
        if (expired.length < EXPIRY_BATCH || this.stopped) break;
      }
      const next = await msToNextExpiry(db.kysely);
      // A few milliseconds late rather than early: the deadline is compared with the statement's now().
      if (next !== null) wait = Math.min(EXPIRY_CHECK_MS, Math.ceil(next) + 2);
    } catch (err) {
      const away = isDatabaseUnavailable(err);
      logger[away ? "debug" : "warn"]({ err: errorMessage(err) }, "expiry pass failed; trying again");
    }
    this.schedule(wait);
  }
}
