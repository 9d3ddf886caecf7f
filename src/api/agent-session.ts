/**
 * The server's side of one agent's Assignments stream (issue 26): it claims attempts for the agent
 * with the same fenced claim the worker processes use (claimFor → store/lifecycle claimNextAttempts,
 * under the agent's worker id), as its slots free up, and sends each as a start; it forwards cancels
 * and pauses of the attempts it sent; it takes back a start the agent does not acknowledge (by
 * naming it in a Heartbeat) within ackMs; and it pings, so an agent can tell a stalled stream from a
 * quiet one.
 *
 * The agent's free slots are what the database says it holds, on any replica (claimWithinSlots,
 * under a lock per agent), not this process's view: an agent whose calls land on other replicas,
 * or that has a second stream elsewhere for a moment, never gets more than its slots.
 *
 * Liveness (docs/design/fencing.md, "Agents"): when the stream ends (the agent died, or the network
 * to it failed) the server shortens the leases of the agent's acknowledged attempts to graceMs
 * (shortenLeases) and rescues, graceMs later, those no heartbeat renewed meanwhile; the agent stops
 * every attempt no heartbeat answer renewed within stopMs (< graceMs), so the two never overlap.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { errorMessage } from "../errors.js";
import { AssignmentsResponseSchema, type AssignmentsResponse as Assignment } from "../gen/task/v1/agent_pb.js";
import type { Logger } from "../logger.js";
import { claimWithinSlots, rescueLapsedAgentAttempts, takeBackUnacknowledged, type AgentRegistration } from "../store/agents.js";
import { CANCEL_CHANNEL, JOBS_INSERT_CHANNEL, PAUSE_CHANNEL, QUEUE_CHANNEL } from "../store/channels.js";
import type { Db } from "../store/db.js";
import { shortenLeases, type AttemptRef, type OwnedAttempt } from "../store/lifecycle/index.js";
import type { Listener } from "../store/listen.js";
import type { TaskRow } from "../store/schema.js";
import { claimFor } from "../worker/claim-loop.js";
import type { SessionTiming } from "./agent-timing.js";
import { QueueGate } from "../worker/queue-gate.js";

interface Sent {
  taskId: string;
  attempt: number;
  sentAt: number;
  acked: boolean;
  /** Its task's queue (undefined: held from an earlier stream, not known here). */
  queue?: string;
  /** Its task's row as the claim returned it (undefined: held from an earlier stream). */
  row?: TaskRow;
}

const key = (a: AttemptRef) => `${a.taskId}:${a.attempt}`;

/** One agent's stream; see the module comment. */
export class AgentSession {
  readonly sent = new Map<string, Sent>();
  /** Attempts the agent reported ended whose outcomes are being recorded (ended → recorded). */
  private readonly reported = new Set<string>();
  /** A newer stream of the agent (on this replica) replaced this one: the agent is alive, its leases stay. */
  replaced = false;
  private readonly outbox: Assignment[] = [];
  private wanted = true;
  private wake: (() => void) | undefined;
  private failure: Error | undefined;
  private readonly claim: (limit: number) => Promise<TaskRow[]>;
  private readonly gate: QueueGate;
  private unitDue: NodeJS.Timeout | undefined;
  private unitDueAt = 0;

  constructor(
    private readonly db: Db,
    readonly agentId: string,
    readonly registration: AgentRegistration,
    private readonly timing: SessionTiming,
    private readonly logger: Logger,
    /** Resolves to an error once the caller's token is no longer valid (revoked, expired). */
    private readonly stillAuthorized: () => Promise<Error | undefined>,
  ) {
    this.gate = new QueueGate(db.kysely, registration.queues, logger, registration.types);
    // A rate limit out of units: claim again when its next unit is due (the poll is the fallback).
    this.claim = claimFor(db, agentId, this.gate, registration.queues, registration.types, (at) => {
      if (this.unitDue && this.unitDueAt <= at) return;
      clearTimeout(this.unitDue);
      this.unitDueAt = at;
      this.unitDue = setTimeout(() => {
        this.unitDue = undefined;
        this.nudge();
      }, Math.max(0, at - Date.now()) + 5);
      this.unitDue.unref();
    }, registration.labels);
  }

  /**
   * Attempts the agent already holds (from an earlier stream: a reconnection): they take slots, as
   * acknowledged, until the agent reports them or a heartbeat shows they are gone.
   */
  seed(held: AttemptRef[]): void {
    for (const a of held) this.sent.set(key(a), { ...a, sentAt: Date.now(), acked: true });
  }

  /** There may be work (a job inserted, a queue changed, the poll): claim soon, asking every queue again. */
  nudge(queueChanged = false): void {
    if (queueChanged) this.gate.invalidate();
    this.gate.wake();
    this.slotFreed();
  }

  /**
   * A slot freed: claim soon. Queues found empty stay quiet (as a worker process's claim loop
   * leaves them), so the claim that refills the slot is one statement, not one per queue kind;
   * new jobs wake them (nudge).
   */
  private slotFreed(freed: Sent[] = []): void {
    // A limited queue's slot freed (or one of unknown queue): its claim may start something now.
    if (freed.some((s) => s.queue === undefined || this.gate.isLimited(s.queue))) this.gate.invalidate();
    this.wanted = true;
    this.wake?.();
  }

  /** A cancel, pause or resume of a task: forwarded if one of its attempts was sent here. */
  signal(taskId: string, kind: "cancel" | "pause" | "resume"): void {
    for (const s of this.sent.values()) {
      if (s.taskId !== taskId) continue;
      this.push(create(AssignmentsResponseSchema, { kind: { case: kind, value: { taskId: BigInt(s.taskId), attempt: s.attempt } } }));
    }
  }

  /**
   * A heartbeat of this agent was answered: the attempts it named and still owns are acknowledged;
   * those it named but no longer owns, and acknowledged ones it no longer names (reported), free
   * their slots.
   */
  heartbeatAnswered(named: AttemptRef[], owned: OwnedAttempt[]): void {
    const namedKeys = new Set(named.map(key));
    const ownedKeys = new Set(owned.map(key));
    const freed: Sent[] = [];
    for (const [k, s] of this.sent) {
      if (ownedKeys.has(k)) s.acked = true;
      else if (namedKeys.has(k) || s.acked) {
        this.sent.delete(k);
        freed.push(s);
      }
    }
    if (freed.length > 0) this.slotFreed(freed);
  }

  /**
   * The agent reported these attempts ended: their slots are free now, while their outcomes are
   * being recorded (the claim does not count them, though the database still does until then).
   * Returns the task rows this stream's claims returned for them (what their outcomes are made of).
   */
  ended(attempts: AttemptRef[]): Map<string, TaskRow> {
    const freed: Sent[] = [];
    const rows = new Map<string, TaskRow>();
    for (const a of attempts) {
      this.reported.add(key(a));
      const s = this.sent.get(key(a));
      if (s && this.sent.delete(key(a))) freed.push(s);
      if (s?.row) rows.set(key(a), s.row);
    }
    if (freed.length > 0) this.slotFreed(freed);
    return rows;
  }

  /** The outcomes of these attempts were recorded (or refused): the database's count is right again. */
  recorded(attempts: AttemptRef[]): void {
    for (const a of attempts) this.reported.delete(key(a));
  }

  /** The stream's messages until `signal` fires (the agent went away) or the session fails. */
  async *messages(signal: AbortSignal): AsyncGenerator<Assignment> {
    const onAbort = () => this.wake?.();
    signal.addEventListener("abort", onAbort, { once: true });
    const poll = setInterval(() => this.nudge(), this.timing.pollMs);
    const acks = setInterval(() => void this.takeBackLate(), Math.min(1_000, this.timing.ackMs));
    const recheck = setInterval(() => {
      this.stillAuthorized().then(
        (err) => err && this.fail(err),
        (err: unknown) => this.logger.warn({ err: errorMessage(err) }, "could not check the agent's token again"),
      );
    }, this.timing.recheckMs);
    let lastSent = Date.now();
    try {
      while (!signal.aborted) {
        if (this.failure) throw this.failure;
        const next = this.outbox.shift();
        if (next) {
          lastSent = Date.now();
          yield next;
          continue;
        }
        if (this.wanted) {
          this.wanted = false;
          // Full as this stream sees it: the database counts at least these (a stale entry, one
          // settled elsewhere, goes at the agent's next heartbeat), so asking it would find no slot.
          if (this.sent.size >= this.registration.slots) continue;
          let tasks: TaskRow[] = [];
          try {
            const { claimed, held, free } = await claimWithinSlots(this.db, this.agentId, this.registration.slots, this.timing.stopMs, (n) => this.claim(n), new Set(this.reported));
            tasks = claimed;
            this.forgetEnded(held);
            if (free > 0 && tasks.length >= free) this.wanted = true;
          } catch (err) {
            // The database may be away: the poll tries again.
            this.logger.warn({ err: errorMessage(err) }, "claiming for an agent failed");
          }
          for (const t of tasks) this.start(t);
          continue;
        }
        const waitMs = Math.max(0, lastSent + this.timing.pingMs - Date.now());
        if (waitMs === 0) {
          this.push(create(AssignmentsResponseSchema, { kind: { case: "pingUnixMs", value: BigInt(Date.now()) } }));
          continue;
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, waitMs);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = undefined;
      }
    } finally {
      clearInterval(poll);
      clearTimeout(this.unitDue);
      clearInterval(acks);
      clearInterval(recheck);
      signal.removeEventListener("abort", onAbort);
      // Starts not yet acknowledged go back when their ack time is up, unless a heartbeat (through a
      // new stream, on any replica) acknowledges them first; acknowledged attempts stay the agent's
      // (it may reconnect within their lease) and are left to the lease.
      const unacked = [...this.sent.values()].filter((s) => !s.acked);
      if (unacked.length > 0) {
        const dueMs = Math.max(0, Math.max(...unacked.map((s) => s.sentAt)) + this.timing.ackMs - Date.now());
        setTimeout(() => void this.takeBackLate(0), dueMs).unref();
      }
      if (!this.replaced) void this.streamEnded();
    }
  }

  /**
   * The stream ended (the agent died, stopped, or the network to it failed): its acknowledged
   * attempts lapse graceMs from now unless a heartbeat renews them, and those not renewed by then
   * are rescued at once. The agent stops each attempt no heartbeat answer renewed within stopMs
   * (< graceMs), so by then its copy has stopped.
   */
  private async streamEnded(): Promise<void> {
    const { leaseMs, graceMs } = this.timing;
    try {
      const shortened = await shortenLeases(this.db.kysely, this.agentId, leaseMs, graceMs);
      if (shortened.length === 0) return;
      this.logger.info({ agentId: this.agentId, attempts: shortened.length, graceMs }, "agent stream ended: its attempts are retried after the grace unless it renews them");
    } catch (err) {
      // The lease still rescues them (the reconciler).
      this.logger.warn({ err: errorMessage(err) }, "could not shorten the leases of an agent whose stream ended; the lease will rescue them");
      return;
    }
    // A moment past the grace: the statement compares with its own now().
    setTimeout(() => {
      rescueLapsedAgentAttempts(this.db.kysely, this.agentId, leaseMs, graceMs).then(
        (rescued) => rescued.length > 0 && this.logger.warn({ agentId: this.agentId, tasks: rescued.map((t) => t.id) }, "rescued the attempts of an agent whose stream ended"),
        (err: unknown) => this.logger.warn({ err: errorMessage(err) }, "could not rescue an agent's attempts after its stream ended; the reconciler will"),
      );
    }, graceMs + 50).unref();
  }

  /** Acknowledged attempts the database no longer gives the agent (reported, or settled elsewhere) free their place. */
  private forgetEnded(held: AttemptRef[]): void {
    const holds = new Set(held.map(key));
    for (const [k, s] of this.sent) if (s.acked && !holds.has(k)) this.sent.delete(k);
  }

  /** Ends the stream with `err` (the token was revoked). */
  fail(err: Error): void {
    this.failure = err;
    this.wake?.();
  }

  private start(task: TaskRow): void {
    this.sent.set(key({ taskId: task.id, attempt: task.attempts }), { taskId: task.id, attempt: task.attempts, sentAt: Date.now(), acked: false, queue: task.queue, row: task });
    this.push(
      create(AssignmentsResponseSchema, {
        kind: {
          case: "start",
          value: {
            taskId: BigInt(task.id),
            attempt: task.attempts,
            type: task.type,
            parametersJson: JSON.stringify(task.parameters ?? {}),
            timeoutMs: BigInt(task.timeout_ms),
            queue: task.queue,
            name: task.name ?? "",
          },
        },
      }),
    );
  }

  private push(message: Assignment): void {
    this.outbox.push(message);
    this.wake?.();
  }

  /**
   * Takes back the starts not acknowledged within `ackMs` (0: every unacknowledged one, once the
   * stream has ended and their ack time is up). The agent stops a start it could not acknowledge
   * within half the ack time, so the two never overlap.
   */
  private async takeBackLate(ackMs = this.timing.ackMs): Promise<void> {
    const now = Date.now();
    const late = [...this.sent.values()].filter((s) => !s.acked && now - s.sentAt >= ackMs);
    if (late.length === 0) return;
    late.forEach((s) => this.sent.delete(key(s)));
    try {
      const taken = await takeBackUnacknowledged(this.db.kysely, this.agentId, late, this.timing.ackMs);
      // Not taken: a heartbeat acknowledged it meanwhile (perhaps on another replica); it keeps its slot.
      const back = new Set(taken.map((t) => t.id));
      for (const s of late) if (!back.has(s.taskId)) this.sent.set(key(s), { ...s, acked: true });
      if (taken.length > 0) this.logger.warn({ agentId: this.agentId, tasks: taken.map((t) => t.id) }, "took back assignments the agent did not acknowledge");
    } catch (err) {
      // The lease still rescues them (the reconciler).
      this.logger.warn({ err: errorMessage(err) }, "could not take back unacknowledged assignments; the lease will");
    }
    this.nudge();
  }
}

/** The agent sessions of this server process, and the notifications they share. */
export class AgentSessions {
  private readonly sessions = new Map<string, AgentSession>();
  private unsubscribe: (() => void)[] = [];

  constructor(private readonly listener: Listener | undefined) {}

  /** Connected agents (this replica). */
  get size(): number {
    return this.sessions.size;
  }

  get(agentId: string): AgentSession | undefined {
    return this.sessions.get(agentId);
  }

  /** Assignments sent to this replica's agents and not yet seen ended (acknowledged or not). */
  inFlight(): number {
    let n = 0;
    for (const s of this.sessions.values()) n += s.sent.size;
    return n;
  }

  /** Adds a session; a second stream of one agent replaces the first (which ends, leaving the leases alone). */
  add(session: AgentSession): void {
    const previous = this.sessions.get(session.agentId);
    if (previous) {
      previous.replaced = true;
      previous.fail(new ConnectError("another stream of this agent replaced this one", Code.Aborted));
    }
    this.sessions.set(session.agentId, session);
    if (this.listener && this.unsubscribe.length === 0) {
      const l = this.listener;
      const all = (fn: (s: AgentSession) => void) => () => this.sessions.forEach(fn);
      this.unsubscribe.push(
        l.subscribe(JOBS_INSERT_CHANNEL, all((s) => s.nudge()), all((s) => s.nudge())),
        l.subscribe(QUEUE_CHANNEL, all((s) => s.nudge(true))),
        l.subscribe(CANCEL_CHANNEL, (taskId) => this.sessions.forEach((s) => s.signal(taskId, "cancel"))),
        l.subscribe(PAUSE_CHANNEL, (payload) => {
          const [taskId, status] = payload.split(":");
          this.sessions.forEach((s) => s.signal(taskId!, status === "paused" ? "pause" : "resume"));
        }),
      );
    }
  }

  /** Removes a session once its stream ended (unless a newer one replaced it). */
  remove(session: AgentSession): void {
    if (this.sessions.get(session.agentId) === session) this.sessions.delete(session.agentId);
    if (this.sessions.size === 0) {
      this.unsubscribe.forEach((end) => end());
      this.unsubscribe = [];
    }
  }
}
