import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { AttemptOutcome } from "../store/lifecycle/index.js";

/** An outcome a worker could not record yet, with what the guarded update needs. */
export interface SpooledOutcome {
  taskId: string;
  attempt: number;
  workerId: string;
  outcome: AttemptOutcome;
}

/**
 * Outcomes waiting for the database, on local disk (one JSON file each, mode 0600 in a 0700
 * directory: results may be private), so a worker restarted during an outage still delivers
 * them. Delivery goes through the same guarded update as ever, so an outcome that arrives after
 * the reconciler settled the attempt, or twice, records nothing.
 */
export class OutcomeSpool {
  constructor(
    private readonly dir: string,
    private readonly logger: Logger,
  ) {}

  private file(entry: Pick<SpooledOutcome, "taskId" | "attempt">): string {
    return path.join(this.dir, `task-${entry.taskId}-attempt-${entry.attempt}.json`);
  }

  /** Writes the outcome to disk (atomically); a disk error is logged, the outcome stays in memory. */
  async save(entry: SpooledOutcome): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      const file = this.file(entry);
      await writeFile(`${file}.tmp`, JSON.stringify(entry), { mode: 0o600 });
      await rename(`${file}.tmp`, file);
    } catch (err) {
      this.logger.error({ err: errorMessage(err), dir: this.dir }, "could not spool an outcome to disk; it is kept in memory only");
    }
  }

  /** Forgets a delivered (or superseded) outcome. */
  async remove(entry: Pick<SpooledOutcome, "taskId" | "attempt">): Promise<void> {
    await rm(this.file(entry), { force: true }).catch(() => undefined);
  }

  /** Every outcome on disk, oldest attempt first; unreadable files are reported and skipped. */
  async load(): Promise<SpooledOutcome[]> {
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => /^task-\d+-attempt-\d+\.json$/.test(n)).sort();
    } catch {
      return []; // no spool yet
    }
    const entries: SpooledOutcome[] = [];
    for (const name of names) {
      try {
        const entry = JSON.parse(await readFile(path.join(this.dir, name), "utf8")) as SpooledOutcome;
        if (entry.outcome.kind === "retrying") entry.outcome.retryAt = new Date(entry.outcome.retryAt);
        entries.push(entry);
      } catch (err) {
        // Gone since the listing: its worker delivered it (several workers may share a spool).
        if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
        this.logger.error({ err: errorMessage(err), file: name }, "ignoring an unreadable spooled outcome");
      }
    }
    return entries;
  }
}
