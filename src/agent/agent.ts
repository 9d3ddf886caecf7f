/**
 * A remote agent (issue 26, `task-cli agent`, the SDK's startAgent): runs task attempts it receives
 * from the control plane over AgentService, with no database credentials.
 *
 * - Connection: Register, then follow the Assignments stream; when it fails, ends, or stays silent
 *   for three ping intervals (a stalled stream), reconnect with backoff and jitter, registering again
 *   under the same id so running attempts stay the agent's. Given several control-plane addresses
 *   (replicas on one database), each reconnection tries the next one: every call (heartbeats,
 *   outcomes) follows the address the stream uses, and a replica's restart moves the agent to another.
 * - Heartbeats: every interval (and ACK_DELAY_MS after a start still running, which acknowledges it) name every attempt
 *   the agent holds (running, or whose outcome is not yet reported); one the answer leaves out is no
 *   longer the agent's and is aborted at once (fencing). An answer renews only if it came back
 *   within the renewal RTT of sending; an attempt no answer renewed for `stop` (RegisterResponse
 *   stop_ms, 3 s by default) is stopped and reported interrupted, whether or not the stream looks
 *   alive: a server that saw the stream end retries it only `grace` (6 s) later, one that did not a
 *   lease later (docs/design/fencing.md, "Agents"). A shell attempt's supervisor kills it on the same
 *   rule, so a stopped (SIGSTOP) or starved agent cannot keep it running either.
 * - Outcomes and output lines: reported by reporter.ts (its module comment says how).
 */
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Backoff, sleep } from "../backoff.js";
import { errorMessage } from "../errors.js";
import { AgentService, type AttemptStart } from "../gen/task/v1/agent_pb.js";
import type { Logger } from "../logger.js";
import type { PluginRegistry } from "../plugins/registry.js";
import type { LogSink, Plugin } from "../plugins/types.js";
import { AttemptPause } from "../worker/attempt-pause.js";
import { AttemptAborted } from "../worker/execute-task.js";
import { describeTaskType } from "../plugins/catalog.js";
import { runAgentAttempt, type AgentAttempt } from "./attempt.js";
import { AgentReporter, attemptKey } from "./reporter.js";
import { AgentSpool, defaultAgentSpoolDir } from "./spool.js";
import { readCa } from "../tls.js";

/** What an agent needs. */
export interface AgentOptions {
  /**
   * The control plane's API address, e.g. https://tasks.example.com or http://127.0.0.1:8080; or
   * several replicas' addresses, comma-separated (or as a list), tried in turn on reconnection.
   */
  server: string | string[];
  /** An agent token (`task-cli agent token create`); empty for a server without tokens. */
  token?: string;
  /** The agent's name, as operators see it (default: the host name). */
  name: string;
  registry: PluginRegistry<Plugin>;
  /** Attempts run at once. */
  slots: number;
  /** The queues to serve (empty: the token's, or `default`). */
  queues?: string[];
  /** Its labels: it claims tasks whose labels are all among them (empty: the token's labels). */
  labels?: Record<string, string>;
  /** HTTP/2 (h2c for http://) instead of HTTP/1.1. */
  http2?: boolean;
  /** The CA to trust for an https:// server: a PEM file's path or its text (default: Node's trust store). */
  ca?: string | Buffer;
  version?: string;
  /** Where outcomes (and output past the memory cap) wait until the control plane accepts them; default: defaultAgentSpoolDir(name). */
  spoolDir?: string;
  /** Deadline of each unary call but Heartbeat (which has its own, twice its interval); default CALL_TIMEOUT_MS. */
  callTimeoutMs?: number;
  logger: Logger;
}

/** A running agent. */
export interface Agent {
  /** The agent's worker id, once registered. */
  readonly agentId: string | undefined;
  /** Attempts running now. */
  inFlight(): number;
  /** Stops taking work, interrupts running attempts (they are retried elsewhere), reports them and closes. */
  stop(): Promise<void>;
}

/**
 * Log lines (and outcomes a failed call left) are sent this often; a tick with nothing to send
 * sends nothing. An outcome goes at once (reporter.ts, flushSoon): the server frees an agent's
 * slot, and claims its next task, only when the outcome arrives.
 */
const FLUSH_MS = 25;
/**
 * Deadline of Register, ReportOutcomes and AppendLogs. Without one, a call behind a network that
 * drops packets waits until the connection closes (minutes), and the reconnection loop (or the
 * flush) waits with it. Each is safe to repeat: Register under the same id, an outcome recorded
 * once (a repeat is refused), a log batch from its first line (what is stored is skipped).
 */
export const CALL_TIMEOUT_MS = 10_000;
/**
 * A start is acknowledged by the first heartbeat that names it, sent this long after the start
 * (one beat for the starts of a batch) rather than at once: the server takes a start back only
 * after ackMs (5 s) and the agent stops an unacknowledged one at half that, so the ack has seconds
 * to spare. An attempt whose outcome is reported first needs no ack (the report frees its slot):
 * a short task costs no heartbeat of its own, and its outcome does not wait for the heartbeat's
 * row locks.
 */
const ACK_DELAY_MS = 100;
/** Reconnection waits (equal jitter). */
const RECONNECT = { baseMs: 250, maxMs: 10_000, jitter: true };

/** Starts an agent; it runs until stop(). */
export function startAgent(options: AgentOptions): Agent {
  return new AgentRuntime(options).begin();
}

/** The addresses in `server` (comma-separated or a list), without trailing slashes. */
export function serverAddresses(server: string | string[]): string[] {
  return (Array.isArray(server) ? server : server.split(",")).map((s) => s.trim().replace(/\/$/, "")).filter(Boolean);
}

class AgentRuntime {
  /** One client per control-plane address; `current` is the one the stream and every call use. */
  private readonly clients: Client<typeof AgentService>[];
  private current = 0;
  private readonly logger: Logger;
  private agentId: string | undefined;
  private heartbeatMs = 1_000;
  private ackMs = 5_000;
  private stopMs = 3_000;
  private renewalRttMs = 1_000;
  private readonly callTimeoutMs: number;
  private registered = false;
  private readonly running = new Map<string, AgentAttempt>();
  private readonly spool: AgentSpool;
  /** Output lines and outcomes not yet accepted by the control plane. */
  private readonly reporter: AgentReporter;
  private stopping = false;
  /** Ends a reconnection wait at stop. */
  private readonly stopped = new AbortController();
  private stream: AbortController | undefined;
  private lastMessageAt = Date.now();
  private pingMs = 5_000;
  private timers: NodeJS.Timeout[] = [];
  private beating: Promise<void> | undefined;
  private beatAgain = false;
  private ackDue: NodeJS.Timeout | undefined;
  private loop: Promise<void> | undefined;
  private readonly attemptsDone = new Set<Promise<void>>();

  constructor(private readonly options: AgentOptions) {
    this.logger = options.logger.child({ component: "agent" });
    this.callTimeoutMs = options.callTimeoutMs ?? CALL_TIMEOUT_MS;
    this.spool = new AgentSpool(options.spoolDir ?? defaultAgentSpoolDir(options.name), this.logger);
    // Fails startAgent when another live agent uses the directory (it would share the id).
    this.spool.open();
    this.agentId = this.spool.savedAgentId();
    this.reporter = new AgentReporter({
      client: () => this.client,
      agentId: () => this.agentId,
      spool: this.spool,
      logger: this.logger,
      callTimeoutMs: this.callTimeoutMs,
      isRunning: (k) => this.running.has(k),
    });
    this.reporter.loadSpooled();
    const interceptors: Interceptor[] = [];
    if (options.token) {
      const header = `Bearer ${options.token}`;
      interceptors.push((next) => (req) => (req.header.set("authorization", header), next(req)));
    }
    const addresses = serverAddresses(options.server);
    if (addresses.length === 0) throw new TypeError("startAgent: server names no address");
    // Read once, at start: a missing CA file fails startAgent rather than every reconnection.
    const ca = addresses.some((a) => a.startsWith("https:")) ? readCa(options.ca) : undefined;
    this.clients = addresses.map((baseUrl) =>
      createClient(
        AgentService,
        options.http2
          ? createConnectTransport({ baseUrl, httpVersion: "2", interceptors, ...(ca ? { nodeOptions: { ca } } : {}) })
          : createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors, ...(ca ? { nodeOptions: { ca } } : {}) }),
      ),
    );
    // Agents given the same list spread over it rather than all starting on the first address.
    this.current = Math.floor(Math.random() * addresses.length);
  }

  /** The client of the address in use. */
  private get client(): Client<typeof AgentService> {
    return this.clients[this.current]!;
  }

  begin(): Agent {
    this.loop = this.connectLoop();
    this.timers.push(
      setInterval(() => this.reporter.flush(), FLUSH_MS),
      setInterval(() => this.watchdog(), 500),
    );
    const self = this;
    return {
      // Only once the control plane answered a Register: the id read from the spool is a claim until then.
      get agentId() {
        return self.registered ? self.agentId : undefined;
      },
      inFlight: () => this.running.size,
      stop: () => this.stop(),
    };
  }

  private async connectLoop(): Promise<void> {
    const backoff = new Backoff(RECONNECT);
    while (!this.stopping) {
      try {
        const reg = await this.client.register({
          name: this.options.name,
          slots: this.options.slots,
          types: this.types(),
          queues: this.options.queues ?? [],
          labels: this.options.labels ?? {},
          version: this.options.version ?? "",
          agentId: this.agentId ?? "",
          typeDescriptions: this.enabled().map((p) => {
            const d = describeTaskType(p);
            return { name: d.name, description: d.description, parameterSchemaJson: JSON.stringify(d.parameterSchema), defaultTimeoutMs: BigInt(d.defaultTimeoutMs), defaultMaxAttempts: d.defaultMaxAttempts, defaultQueue: d.defaultQueue ?? "" };
          }),
        }, { timeoutMs: this.callTimeoutMs, signal: this.stopped.signal });
        const first = !this.registered;
        this.registered = true;
        if (reg.agentId !== this.agentId) this.spool.saveAgentId(reg.agentId);
        this.agentId = reg.agentId;
        this.heartbeatMs = reg.heartbeatIntervalMs || this.heartbeatMs;
        this.ackMs = reg.ackMs || this.ackMs;
        // A server from before stop_ms: stop well within its lease.
        this.stopMs = reg.stopMs || Math.max(1_000, (reg.leaseMs || 15_000) - 2 * this.heartbeatMs);
        this.renewalRttMs = reg.renewalRttMs || this.heartbeatMs;
        if (first) {
          this.timers.push(setInterval(() => this.beatNow(), this.heartbeatMs));
          this.logger.info({ agentId: reg.agentId, queues: reg.queues, labels: reg.labels, slots: this.options.slots, types: this.types() }, "agent registered");
        }
        // A reconnection: say at once which attempts are still ours.
        this.beatNow();
        this.stream = new AbortController();
        this.lastMessageAt = Date.now();
        for await (const message of this.client.assignments({ agentId: reg.agentId }, { signal: this.stream.signal })) {
          this.lastMessageAt = Date.now();
          backoff.succeeded();
          const kind = message.kind;
          if (kind.case === "start") this.startAttempt(kind.value);
          else if (kind.case === "cancel") this.running.get(attemptKey(kind.value))?.controller.abort(new AttemptAborted("cancel", "cancelled by request"));
          else if (kind.case === "pause" || kind.case === "resume") this.running.get(attemptKey(kind.value))?.pause.set(kind.case === "pause");
        }
        if (!this.stopping) this.logger.warn("the assignment stream ended; reconnecting");
      } catch (err) {
        if (this.stopping) break;
        const e = ConnectError.from(err);
        if (!this.registered && e.code === Code.InvalidArgument && /agent_id/.test(e.rawMessage)) {
          // The saved id is not this token's (or this name's): register anew; its spooled outcomes are refused with the reason.
          this.logger.warn({ agentId: this.agentId, err: e.rawMessage }, "the spool's agent id is not this agent's; registering a new one");
          this.agentId = undefined;
          this.spool.saveAgentId(undefined);
          continue;
        }
        this.logger.warn({ err: errorMessage(err) }, "agent connection failed; reconnecting");
      }
      // The next address (if there are several): the replica that failed may be restarting.
      this.current = (this.current + 1) % this.clients.length;
      if (!this.stopping) await sleep(backoff.failed(), this.stopped.signal);
    }
  }

  private startAttempt(start: AttemptStart): void {
    const k = attemptKey(start);
    // Not started while stopping: the next heartbeat leaves it unacknowledged, and the server takes it back.
    if (this.running.has(k) || this.stopping) return;
    const attempt: AgentAttempt = { start, controller: new AbortController(), pause: new AttemptPause(), renewed: new Set(), renewedAt: Date.now(), acked: false };
    this.running.set(k, attempt);
    // The next heartbeat acknowledges the start: send it soon rather than at the interval.
    this.ackSoon();
    const logger = this.logger.child({ taskId: start.taskId.toString(), attempt: start.attempt });
    const output: LogSink = { write: (stream, line) => this.reporter.addLine(start, stream, line) };
    const agentId = this.agentId!;
    const done = runAgentAttempt(this.options.registry, attempt, output, this.stopMs, logger)
      .then((result) => {
        if (!result) return;
        // On disk before it is sent: a restart reports it.
        const entry = { agentId, result };
        this.spool.saveOutcome(entry);
        this.reporter.addOutcome(k, entry);
      })
      .catch((err: unknown) => logger.error({ err: errorMessage(err) }, "an attempt ended with an unexpected error"))
      .finally(() => {
        this.running.delete(k);
        this.attemptsDone.delete(done);
        this.reporter.forgetIfDone(k);
      });
    this.attemptsDone.add(done);
  }

  /** The types the agent runs: its plugins, less those disabled here (shell without --enable-shell). */
  private types(): string[] {
    return this.enabled().map((p) => p.name);
  }

  private enabled(): Plugin[] {
    return this.options.registry.list().filter((p) => p.disabledReason === undefined);
  }

  /** Beats ACK_DELAY_MS from now if an attempt is still unacknowledged then (see ACK_DELAY_MS). */
  private ackSoon(): void {
    if (this.ackDue) return;
    this.ackDue = setTimeout(() => {
      this.ackDue = undefined;
      if ([...this.running.values()].some((a) => !a.acked)) this.beatNow();
    }, ACK_DELAY_MS);
    this.ackDue.unref();
  }

  /** Beats now; if a beat is in flight, once more right after it (a start it did not name must be acknowledged soon). */
  private beatNow(): void {
    if (this.beating) {
      this.beatAgain = true;
      return;
    }
    this.beating = this.beatOnce().finally(() => {
      this.beating = undefined;
      if (this.beatAgain) {
        this.beatAgain = false;
        this.beatNow();
      }
    });
  }

  private async beatOnce(): Promise<void> {
    if (!this.agentId) return;
    const snapshot = [...this.running.values()];
    const agentId = this.agentId;
    const reporting = this.reporter.unreported(agentId);
    const named = [...snapshot.map((a) => ({ taskId: a.start.taskId, attempt: a.start.attempt })), ...reporting];
    const sentAt = Date.now();
    try {
      const answer = await this.client.heartbeat({ agentId, attempts: named, busy: this.running.size }, { timeoutMs: this.heartbeatMs * 2 });
      // A late answer fences (an attempt it leaves out is not ours) but does not renew: the
      // attempt's lease may have been judged from a heartbeat_at older than our send time + RTT.
      const renews = Date.now() - sentAt <= this.renewalRttMs;
      const owned = new Map(answer.owned.map((o) => [attemptKey(o), o]));
      for (const a of snapshot) {
        const o = owned.get(attemptKey(a.start));
        if (!o) {
          if (!a.controller.signal.aborted) {
            this.logger.warn({ taskId: a.start.taskId.toString(), attempt: a.start.attempt }, "aborting an attempt that is no longer this agent's");
            a.controller.abort(new AttemptAborted("lost", "aborted: the attempt was no longer this agent's"));
          }
          continue;
        }
        if (o.cancelRequested) a.controller.abort(new AttemptAborted("cancel", "cancelled by request"));
        if (o.paused !== a.pause.paused && a.pause.changedAt < sentAt) a.pause.set(o.paused);
        a.acked = true;
        if (!renews) continue;
        a.renewedAt = Math.max(a.renewedAt, sentAt);
        a.renewed.forEach((renew) => renew());
      }
    } catch (err) {
      this.logger.warn({ err: errorMessage(err) }, "heartbeat failed");
    }
  }

  /** Stops attempts that went unrenewed for too long, and a stream that went silent. */
  private watchdog(): void {
    const now = Date.now();
    for (const a of this.running.values()) {
      // A start not yet acknowledged may be taken back ackMs after the server sent it: stopped at half that.
      const limit = a.acked ? this.stopMs : this.ackMs / 2;
      if (now - a.renewedAt > limit && !a.controller.signal.aborted) {
        this.logger.warn({ taskId: a.start.taskId.toString() }, "no heartbeat renewed the attempt in time: stopping it before the control plane may retry it elsewhere");
        // Reported as interrupted (retried at once) if it is still ours when the control plane is back.
        a.controller.abort(new AttemptAborted("shutdown", `interrupted: the agent could not renew its lease for ${limit} ms (control plane unreachable)`));
      }
    }
    if (this.stream && now - this.lastMessageAt > 3 * this.pingMs) {
      this.logger.warn("the assignment stream went silent; reconnecting");
      this.stream.abort();
      this.stream = undefined;
    }
  }

  private async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.stopped.abort();
    this.stream?.abort();
    for (const a of this.running.values()) a.controller.abort(new AttemptAborted("shutdown", "interrupted: the agent shut down"));
    await Promise.allSettled([...this.attemptsDone]);
    // Report what ended, for a few seconds at most.
    const deadline = Date.now() + 5_000;
    while (this.reporter.hasOutcomes() && Date.now() < deadline) {
      await this.reporter.flush();
      if (this.reporter.hasOutcomes()) await sleep(200);
    }
    this.timers.forEach((t) => clearInterval(t));
    clearTimeout(this.ackDue);
    await this.loop;
    // What is still unsent stays in the spool for the next run; the lock goes.
    this.spool.close();
    this.logger.info("agent stopped");
  }
}
