/**
 * What a remote agent's attempts produce, on its way to the control plane (agent.ts runs them).
 *
 * - Outcomes are reported as attempts end, those that end in one turn of the event loop together
 *   (the starts of one claim end together), one call at a time; output lines are batched (every
 *   FLUSH_MS, agent.ts), an attempt's lines before its outcome.
 * - Both are kept while the control plane is unreachable: outcomes on disk (spool.ts) until
 *   accepted, surviving a restart; lines in memory up to a cap, then on disk (output-buffer.ts).
 */
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { errorMessage } from "../errors.js";
import type { AgentService } from "../gen/task/v1/agent_pb.js";
import type { Logger } from "../logger.js";
import { OutputBuffer } from "./output-buffer.js";
import type { AgentSpool, SpooledResult } from "./spool.js";

/** Most lines sent per attempt in one AppendLogs (the server's MAX_LOG_LINES_PER_BATCH). */
const LINES_PER_BATCH = 5_000;

/** An attempt's key in the agent's maps. */
export const attemptKey = (a: { taskId: bigint; attempt: number }) => `${a.taskId}:${a.attempt}`;

/** What the reporter needs from the agent. */
export interface AgentReporterDeps {
  /** The client of the address in use: the agent moves between replicas on reconnection. */
  client: () => Client<typeof AgentService>;
  /** The agent's id, once it has one. */
  agentId: () => string | undefined;
  spool: AgentSpool;
  logger: Logger;
  /** Deadline of ReportOutcomes and AppendLogs. */
  callTimeoutMs: number;
  /** Whether the attempt with this key is still running (its lines are kept while it is). */
  isRunning: (key: string) => boolean;
}

/** See the module comment. */
export class AgentReporter {
  /** Outcomes not yet accepted (also on disk), in order, with the agent id they belong to. */
  private readonly outcomes = new Map<string, SpooledResult>();
  /** Output not yet sent, per attempt, in order; kept until the attempt's outcome is reported. */
  private readonly lines = new Map<string, { taskId: bigint; attempt: number; buffer: OutputBuffer }>();
  private sendingLines: Promise<void> | undefined;
  /** Attempts whose lines are in an AppendLogs not yet answered: their outcomes wait for it. */
  private readonly linesInFlight = new Set<string>();
  private flushDue: NodeJS.Immediate | undefined;
  private reporting: Promise<void> | undefined;

  constructor(private readonly deps: AgentReporterDeps) {}

  /** Takes up the outcomes an earlier run of this agent left in its spool. */
  loadSpooled(): void {
    const { spool, logger } = this.deps;
    for (const entry of spool.loadOutcomes()) this.outcomes.set(attemptKey(entry.result), entry);
    if (this.outcomes.size > 0) logger.info({ outcomes: this.outcomes.size, spool: spool.dir }, "reporting outcomes an earlier run of this agent left in its spool");
  }

  /** Whether some outcome is not yet accepted. */
  hasOutcomes(): boolean {
    return this.outcomes.size > 0;
  }

  /** The attempts of `agentId` whose outcomes are not yet accepted (its heartbeats name them). */
  unreported(agentId: string): { taskId: bigint; attempt: number }[] {
    return [...this.outcomes.values()].filter((o) => o.agentId === agentId).map((o) => ({ taskId: o.result.taskId, attempt: o.result.attempt }));
  }

  /** An attempt's outcome, already on disk: reported soon (see flushSoon). */
  addOutcome(k: string, entry: SpooledResult): void {
    this.outcomes.set(k, entry);
    this.flushSoon();
  }

  /** An attempt ended: drops its lines if nothing of it is left to send. */
  forgetIfDone(k: string): void {
    // Fenced (nothing to report) with all its lines sent: nothing more to keep.
    if (!this.outcomes.has(k) && !this.lines.get(k)?.buffer.size) this.lines.delete(k);
  }

  /** Keeps an attempt's output line until the control plane stores it (the attempt's LogSink). */
  addLine(ref: { taskId: bigint; attempt: number }, stream: "stdout" | "stderr" | "system", line: string): boolean {
    const k = attemptKey(ref);
    let buffered = this.lines.get(k);
    if (!buffered) this.lines.set(k, (buffered = { taskId: ref.taskId, attempt: ref.attempt, buffer: new OutputBuffer(this.deps.spool.dir, ref.taskId, ref.attempt) }));
    try {
      buffered.buffer.add(stream, line);
    } catch (err) {
      this.deps.logger.error({ err: errorMessage(err), taskId: ref.taskId.toString() }, "could not keep an output line on disk");
    }
    return true;
  }

  /**
   * An outcome is ready: report it after the current turn of the event loop, with the others that
   * end in it (the starts of one claim arrive together, and short attempts end together).
   */
  private flushSoon(): void {
    if (this.flushDue) return;
    this.flushDue = setImmediate(() => {
      this.flushDue = undefined;
      void this.flush();
    });
  }

  /**
   * Sends buffered lines, then the outcomes of attempts whose lines are all sent. Never rejects:
   * what could not be sent (the control plane away, a spool file unreadable) is kept for the next
   * flush (the FLUSH_MS tick calls it without waiting).
   */
  async flush(): Promise<void> {
    try {
      await this.sendLines();
      await this.report();
    } catch (err) {
      this.deps.logger.warn({ err: errorMessage(err) }, "could not send output or outcomes; keeping them");
    }
  }

  /** Sends buffered lines; one call at a time (a task's lines are numbered in the order they arrive). */
  private sendLines(): Promise<void> {
    return (this.sendingLines ??= this.sendLinesOnce().finally(() => (this.sendingLines = undefined)));
  }

  private async sendLinesOnce(): Promise<void> {
    const agentId = this.deps.agentId();
    if (!agentId) return;
    const pending = [...this.lines.entries()].filter(([, b]) => b.buffer.size > 0).slice(0, 500);
    if (pending.length === 0) return;
    const batches = pending.map(([k, b]) => ({ k, b, taken: b.buffer.take(LINES_PER_BATCH) }));
    batches.forEach(({ k }) => this.linesInFlight.add(k));
    try {
      const answer = await this.deps.client().appendLogs({
        agentId,
        batches: batches.map(({ b, taken }) => ({ taskId: b.taskId, attempt: b.attempt, firstLine: BigInt(taken[0]?.n ?? 0), lines: taken.map(({ stream, line }) => ({ stream, line })) })),
      }, { timeoutMs: this.deps.callTimeoutMs });
      // Not stored: the attempt is no longer ours, and nor are its lines.
      batches.forEach(({ k, b }, i) => {
        if (answer.stored[i]) return;
        b.buffer.discard();
        if (!this.deps.isRunning(k)) this.lines.delete(k);
      });
    } catch (err) {
      // Back in front, in order.
      for (const { b, taken } of batches) b.buffer.giveBack(taken);
      this.deps.logger.warn({ err: errorMessage(err) }, "could not send output; keeping it");
    } finally {
      batches.forEach(({ k }) => this.linesInFlight.delete(k));
    }
  }

  /**
   * Reports the outcomes whose lines are all sent, one call at a time. The server claims a slot's
   * next task when its outcome arrives, so what ends while a call is in flight goes as soon as it
   * is answered, not at the next tick (after a failed call, at the next tick).
   */
  private report(): Promise<void> {
    return (this.reporting ??= this.reportReady().finally(() => (this.reporting = undefined)).then((sent) => {
      if (sent && this.readyOutcomes().length > 0) void this.flush();
    }));
  }

  /** Outcomes whose attempt's lines are all stored: none waiting, none in a call not yet answered. */
  private readyOutcomes(): [string, SpooledResult][] {
    return [...this.outcomes.entries()].filter(([k]) => !this.linesInFlight.has(k) && !(this.lines.get(k)?.buffer.size ?? 0));
  }

  /** One call per agent id among the ready outcomes (an earlier run's may have another); false if a call failed. */
  private async reportReady(): Promise<boolean> {
    const agentId = this.deps.agentId();
    if (!agentId) return false;
    const ready = this.readyOutcomes().slice(0, 500);
    for (const owner of new Set(ready.map(([, o]) => o.agentId))) {
      const mine = ready.filter(([, o]) => o.agentId === owner);
      let answer;
      try {
        answer = await this.deps.client().reportOutcomes({ agentId: owner, results: mine.map(([, o]) => o.result) }, { timeoutMs: this.deps.callTimeoutMs });
      } catch (err) {
        const e = ConnectError.from(err);
        if (owner === agentId || (e.code !== Code.PermissionDenied && e.code !== Code.InvalidArgument)) {
          this.deps.logger.warn({ err: errorMessage(err) }, "could not report outcomes; keeping them");
          return false;
        }
        // An earlier run's outcomes under an id this token may not use: refused for good.
        answer = { recorded: mine.map(() => false), reasons: mine.map(() => e.rawMessage) };
      }
      mine.forEach(([k, o], i) => {
        this.outcomes.delete(k);
        this.lines.delete(k);
        this.deps.spool.removeOutcome(o.result);
        if (!answer.recorded[i]) {
          this.deps.logger.warn({ taskId: o.result.taskId.toString(), attempt: o.result.attempt, reason: answer.reasons[i] ?? "" }, "outcome refused: the attempt was no longer this agent's");
        }
      });
    }
    return true;
  }
}
