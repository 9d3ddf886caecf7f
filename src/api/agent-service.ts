/**
 * AgentService (proto/task/v1/agent.proto, issue 26): remote agents run tasks through the API port
 * and hold no database credentials. An agent is a worker to the lifecycle: it registers as a row in
 * `workers`, its attempts are claimed under its id by the workers' fenced claim (agent-session.ts),
 * its Heartbeat is heartbeat() for its attempts, and its outcomes go through recordOutcomes with its
 * id, so a late or duplicate outcome records nothing. Its liveness is its stream and its heartbeat:
 * when its stream ends, its attempts are retried after a short grace unless a heartbeat renews
 * them (agent-session.ts); an agent that stops beating with its stream open (stopped, partitioned
 * behind a proxy that keeps the connection) loses them after the lease (TASK_LEASE_MS), to the
 * reconciler that every server process runs (agent-upkeep.ts).
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { backoffDelayMs } from "../backoff.js";
import type { Config } from "../config.js";
import { formatDuration } from "../duration.js";
import { errorMessage, InvalidArgumentError, PermissionDeniedError } from "../errors.js";
import { AgentService, AttemptResult_Kind, type AgentTaskType, type AttemptResult, type ReportOutcomesRequest } from "../gen/task/v1/agent_pb.js";
import { fingerprint } from "../fingerprint.js";
import { registerWorkerTypes, type TaskTypeVersionInput } from "../store/task-types.js";
import type { Logger } from "../logger.js";
import { attemptLineCount, attemptsHeldBy, attemptsOf, findAgentRegistration, recordAgentDetails, type AgentRegistration } from "../store/agents.js";
import type { Db } from "../store/db.js";
import { afterAttempt, heartbeat, recordOutcomes, type AttemptOutcome, type AttemptRef, type OutcomeRecord } from "../store/lifecycle/index.js";
import type { Listener } from "../store/listen.js";
import { DEFAULT_QUEUE } from "../store/queues.js";
import type { TaskRow } from "../store/schema.js";
import { appendLogLines, type LogStream } from "../store/task-logs.js";
import { findTasks } from "../store/tasks.js";
import { DEFAULT_MAX_RESULT_BYTES, storableResult } from "../worker/result.js";
import { AgentSession, AgentSessions } from "./agent-session.js";
import { agentTiming, type SessionTiming } from "./agent-timing.js";
import { requestInfoKey } from "./audit-context.js";
import type { Authenticator } from "./auth.js";
import { Violations } from "./fields.js";
import { callerOf, type Identity } from "./identity.js";
import { labelsOf } from "../labels.js";

/** What the agent handlers need. */
export interface AgentServiceDeps {
  db: Db;
  auth: Authenticator;
  listener?: Listener;
  logger: Logger;
  config: Partial<Pick<Config, "heartbeatIntervalMs" | "leaseMs" | "backoffBaseMs" | "backoffMaxMs" | "maxResultBytes">>;
  /** Overrides of the session timings (tests). */
  timing?: Partial<SessionTiming>;
  /** This process's agent sessions (the /metrics gauges read them); default: a new set. */
  sessions?: AgentSessions;
}

/** Most results in one ReportOutcomes, batches in one AppendLogs, lines in one batch. */
export const MAX_AGENT_BATCH = 500;
export const MAX_LOG_LINES_PER_BATCH = 5_000;
/** Longest stored output line (longer ones are cut). */
const MAX_LINE_CHARS = 64 * 1024;

const NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const TYPE = /^[a-z][a-z0-9_]{0,63}$/;

/** An agent's id says which token registered it, so no other token can act as that agent. */
function idPrefix(who: Identity): string {
  return `agent:${who.name}:`;
}

/** Throws PermissionDenied unless `agentId` was registered with the caller's token. */
function requireOwnAgent(who: Identity, agentId: string): void {
  if (!agentId.startsWith(idPrefix(who))) throw new PermissionDeniedError(`agent ${agentId.slice(0, 100) || '""'} was not registered with this token`);
}

const STREAMS = new Set<LogStream>(["stdout", "stderr", "system"]);

/** The AgentService handlers; see the module comment. */
export function createAgentService(deps: AgentServiceDeps): ServiceImpl<typeof AgentService> {
  const { db, logger } = deps;
  const leaseMs = deps.config.leaseMs ?? 15_000;
  const timing = agentTiming(leaseMs, deps.config.heartbeatIntervalMs ?? 3_000, deps.timing);
  const sessions = deps.sessions ?? new AgentSessions(deps.listener);

  const registrationOf = async (agentId: string): Promise<AgentRegistration> => {
    const local = sessions.get(agentId)?.registration;
    if (local) return local;
    const stored = await findAgentRegistration(db.kysely, agentId);
    if (!stored) throw new ConnectError(`agent ${agentId} is not registered (or was judged dead): register again`, Code.FailedPrecondition);
    return stored;
  };

  /**
   * Records the reported outcomes of attempts the agent still holds; the answer says which were
   * recorded, and why not. An outcome is made from its task's row as this stream's claim returned
   * it (`claimed`), read only for attempts claimed elsewhere (an earlier stream, another replica):
   * recordOutcomes records nothing for an attempt that is no longer the agent's, and the reason is
   * read then.
   */
  async function record(req: ReportOutcomesRequest, named: AttemptRef[], claimed: Map<string, TaskRow>): Promise<{ recorded: boolean[]; reasons: string[] }> {
    const records: (OutcomeRecord | undefined)[] = [];
    const reasons: string[] = [];
    // One read for the batch, of the rows not at hand: a read per result made a batch of 5 take
    // 15-85 ms on a busy database, and the agent sends its next batch only after this one's answer.
    const unknown = [...new Set(named.filter((n) => !claimed.has(`${n.taskId}:${n.attempt}`)).map((n) => n.taskId))];
    const read = new Map((unknown.length > 0 ? await findTasks(db.kysely, unknown) : []).map((t) => [t.id, t]));
    for (const [i, r] of req.results.entries()) {
      const ref = named[i]!;
      const task = claimed.get(`${ref.taskId}:${ref.attempt}`) ?? read.get(ref.taskId);
      // Not the agent's attempt (any more): nothing to record; recordOutcomes would refuse it too.
      const refused = refusal(task, req.agentId, r.attempt);
      reasons.push(refused);
      if (refused !== "" || !task) records.push(undefined);
      else records.push({ taskId: task.id, attempt: r.attempt, workerId: req.agentId, outcome: outcomeOf(task, r, deps.config, i) });
    }
    const wanted = records.filter((r): r is OutcomeRecord => r !== undefined);
    const recorded = await recordOutcomes(db, wanted);
    const byKey = new Map(wanted.map((w, i) => [`${w.taskId}:${w.attempt}`, recorded[i] !== undefined]));
    const ok = named.map((n) => byKey.get(`${n.taskId}:${n.attempt}`) ?? false);
    // Refused though its claimed row said it was ours: say why, as the row reads now.
    const settled = named.filter((n, i) => !ok[i] && reasons[i] === "");
    const now = new Map((settled.length > 0 ? await findTasks(db.kysely, settled.map((n) => n.taskId)) : []).map((t) => [t.id, t]));
    return { recorded: ok, reasons: ok.map((yes, i) => (yes ? "" : reasons[i] || refusal(now.get(named[i]!.taskId), req.agentId, named[i]!.attempt) || "the attempt was settled meanwhile (no longer the agent's)")) };
  }

  return {
    async register(req, ctx) {
      const who = callerOf(ctx);
      const v = new Violations();
      if (!NAME.test(req.name)) v.add("name", `"${req.name.slice(0, 64)}" is not an agent name: 1-64 of a-z, 0-9, "_", "-", ".", starting with a letter or digit`);
      if (!Number.isInteger(req.slots) || req.slots < 1 || req.slots > 1000) v.add("slots", "must be between 1 and 1000");
      if (req.types.length === 0) v.add("types", "must list at least one task type");
      else if (req.types.length > 100) v.add("types", "must list at most 100 task types");
      else req.types.forEach((t, i) => TYPE.test(t) || v.add(`types[${i}]`, `"${t.slice(0, 64)}" is not a task type name`));
      const queues = v.queues("queues", req.queues);
      const asked = v.labels("labels", req.labels);
      v.text("version", req.version, 100);
      if (req.agentId !== "" && !req.agentId.startsWith(`${idPrefix(who)}${req.name}:`)) v.add("agent_id", "is not an id this token registered under this name");
      v.throwIfAny();
      // A restricted token fixes the queues (and types) the agent may claim: it may narrow them, never widen them.
      const outside = who.queues.length > 0 ? queues.filter((q) => !who.queues.includes(q)) : [];
      if (outside.length > 0) throw new PermissionDeniedError(`queues ${outside.join(", ")} are outside token ${who.name}'s queues (${who.queues.join(", ")})`);
      const types = who.types.length > 0 ? req.types.filter((t) => who.types.includes(t)) : req.types;
      if (types.length === 0) throw new PermissionDeniedError(`none of the agent's types is among token ${who.name}'s types (${who.types.join(", ")})`);
      const served = [...new Set(queues.length > 0 ? queues : who.queues.length > 0 ? who.queues : [DEFAULT_QUEUE])].sort();
      const labels = agentLabels(who, asked);
      const agentId = req.agentId || `${idPrefix(who)}${req.name}:${randomBytes(6).toString("hex")}`;
      await heartbeat(db.kysely, agentId, [], [], {
        types: [...new Set(types)].sort(),
        queues: served,
        slots: req.slots,
        busy: 0,
        host: `${req.name} (agent${req.version ? ` ${req.version}` : ""})`,
        pid: null,
        labels,
      });
      await recordAgentDetails(db.kysely, agentId, { agentName: req.name, version: req.version });
      const described = describedTypes(req.typeDescriptions, types);
      // Its types join the catalog like a worker process's, so tasks of a type only agents run can be created.
      if (described.length > 0) await registerWorkerTypes(db.kysely, agentId, described);
      logger.info({ agentId, queues: served, types, slots: req.slots, version: req.version, labels }, "agent registered");
      return {
        agentId,
        queues: served,
        heartbeatIntervalMs: timing.heartbeatMs,
        leaseMs,
        ackMs: timing.ackMs,
        stopMs: timing.stopMs,
        graceMs: timing.graceMs,
        renewalRttMs: timing.renewalRttMs,
        labels: labelsOf(labels),
      };
    },

    async *assignments(req, ctx) {
      const who = callerOf(ctx);
      requireOwnAgent(who, req.agentId);
      const registration = await registrationOf(req.agentId);
      const header = ctx.requestHeader.get("authorization");
      const session = new AgentSession(db, req.agentId, registration, timing, logger.child({ agentId: req.agentId }), async () => {
        if (who.local) return undefined;
        const result = await deps.auth.authenticate(header);
        return "problem" in result ? new ConnectError(`the agent's token is no longer valid: ${result.problem}`, Code.Unauthenticated) : undefined;
      });
      // A reconnection: what the agent still runs fills its slots.
      session.seed(await attemptsOf(db.kysely, req.agentId));
      sessions.add(session);
      const address = ctx.values.get(requestInfoKey).clientAddress ?? "";
      await recordAgentDetails(db.kysely, req.agentId, { address, replica: REPLICA }).catch((err: unknown) =>
        logger.warn({ err: errorMessage(err) }, "could not record where the agent's stream is held"),
      );
      logger.info({ agentId: req.agentId }, "agent stream opened");
      try {
        yield* session.messages(ctx.signal);
      } finally {
        sessions.remove(session);
        logger.info({ agentId: req.agentId }, "agent stream closed");
      }
    },

    async heartbeat(req, ctx) {
      const who = callerOf(ctx);
      requireOwnAgent(who, req.agentId);
      const named = refs("attempts", req.attempts);
      const reg = await registrationOf(req.agentId);
      const owned = await heartbeat(db.kysely, req.agentId, [], named, { ...reg, busy: Math.max(0, req.busy), pid: null });
      sessions.get(req.agentId)?.heartbeatAnswered(named, owned);
      return { owned: owned.map((o) => ({ taskId: BigInt(o.taskId), attempt: o.attempt, cancelRequested: o.cancelRequested, paused: o.paused })) };
    },

    async reportOutcomes(req, ctx) {
      const who = callerOf(ctx);
      requireOwnAgent(who, req.agentId);
      if (req.results.length > MAX_AGENT_BATCH) throw InvalidArgumentError.of("results", `must list at most ${MAX_AGENT_BATCH} results`);
      const named = refs("results", req.results);
      // The agent runs these no more: their slots go to the next claim while the outcomes are recorded.
      const session = sessions.get(req.agentId);
      const claimed = session?.ended(named) ?? new Map<string, TaskRow>();
      try {
        return await record(req, named, claimed);
      } finally {
        session?.recorded(named);
      }
    },

    async appendLogs(req, ctx) {
      const who = callerOf(ctx);
      requireOwnAgent(who, req.agentId);
      if (req.batches.length > MAX_AGENT_BATCH) throw InvalidArgumentError.of("batches", `must list at most ${MAX_AGENT_BATCH} batches`);
      const v = new Violations();
      req.batches.forEach((b, i) => {
        if (b.lines.length > MAX_LOG_LINES_PER_BATCH) v.add(`batches[${i}].lines`, `must list at most ${MAX_LOG_LINES_PER_BATCH} lines`);
        b.lines.forEach((l, j) => STREAMS.has(l.stream as LogStream) || v.add(`batches[${i}].lines[${j}].stream`, "must be stdout, stderr or system"));
      });
      v.throwIfAny();
      const named = refs("batches", req.batches);
      const held = await attemptsHeldBy(db.kysely, req.agentId, named);
      const stored: boolean[] = [];
      // In order, one batch after the other: a task's lines are numbered as they arrive.
      for (const [i, b] of req.batches.entries()) {
        const ok = held.has(`${named[i]!.taskId}:${named[i]!.attempt}`);
        // A batch sent again (its answer was lost): what is already stored is skipped.
        const skip = ok && b.lines.length > 0 ? Math.max(0, (await attemptLineCount(db.kysely, named[i]!.taskId, b.attempt)) - Number(b.firstLine)) : 0;
        if (ok && b.lines.length > skip) {
          const fresh = b.lines.slice(skip).map((l) => ({ stream: l.stream as LogStream, line: l.line.slice(0, MAX_LINE_CHARS) }));
          await appendLogLines(db.kysely, named[i]!.taskId, b.attempt, fresh);
        }
        stored.push(ok);
      }
      return { stored };
    },
  };
}

/**
 * The labels an agent registers with: those it asked for, or its token's when it asked for none. A
 * token with labels fixes them: the agent may drop some (claiming less), never add one, since a
 * label is what lets it claim a task (PermissionDenied, nothing written). A token without labels
 * (or the local caller) lets the agent have any.
 */
function agentLabels(who: Identity, asked: string[]): string[] {
  const allowed = who.labels ?? [];
  if (asked.length === 0) return allowed;
  const outside = allowed.length > 0 ? asked.filter((l) => !allowed.includes(l)) : [];
  if (outside.length > 0) throw new PermissionDeniedError(`labels ${outside.join(", ")} are outside token ${who.name}'s labels (${allowed.join(", ")})`);
  return asked;
}

/** This server process, as ListWorkers names the replica holding an agent's stream. */
const REPLICA = `${os.hostname()}:${process.pid}`;

/** Why an outcome for `attempt` of `task` from `agentId` cannot be recorded, or "" if it can. */
function refusal(task: TaskRow | undefined, agentId: string, attempt: number): string {
  if (!task) return "the task no longer exists";
  if (task.attempts !== attempt) return `attempt ${attempt} is over: the task is on attempt ${task.attempts} (${task.status})`;
  if (task.worker_id !== agentId) {
    return `attempt ${attempt} is no longer this agent's: the task is ${task.status}${task.last_error ? ` (${task.last_error})` : ""}`;
  }
  return "";
}

/** The type descriptions of a Register, checked: one per type it runs, or none at all. */
function describedTypes(descriptions: readonly AgentTaskType[], types: string[]): TaskTypeVersionInput[] {
  if (descriptions.length === 0) return [];
  const v = new Violations();
  const out: TaskTypeVersionInput[] = [];
  descriptions.forEach((d, i) => {
    const field = `type_descriptions[${i}]`;
    let parameterSchema: unknown;
    try {
      parameterSchema = JSON.parse(d.parameterSchemaJson);
    } catch {
      parameterSchema = undefined;
    }
    if (!types.includes(d.name)) v.add(`${field}.name`, `"${d.name.slice(0, 64)}" is not one of the agent's types`);
    if (parameterSchema === null || typeof parameterSchema !== "object" || Array.isArray(parameterSchema)) v.add(`${field}.parameter_schema_json`, "must be a JSON Schema object");
    if (!(d.defaultTimeoutMs > 0n)) v.add(`${field}.default_timeout_ms`, "must be more than 0");
    if (!(d.defaultMaxAttempts >= 1)) v.add(`${field}.default_max_attempts`, "must be 1 or more");
    if (d.defaultQueue !== "") v.queueName(`${field}.default_queue`, d.defaultQueue);
    v.text(`${field}.description`, d.description, 2_000);
    const defaults = { timeoutMs: Number(d.defaultTimeoutMs), maxAttempts: d.defaultMaxAttempts, queue: d.defaultQueue || null };
    out.push({
      name: d.name,
      // As describeTaskType computes it, so an agent and a worker with the same plugin share a version.
      schemaHash: fingerprint({ parameterSchema, defaults }).slice(0, 16),
      description: d.description,
      parameterSchema: parameterSchema as Record<string, unknown>,
      defaultTimeoutMs: defaults.timeoutMs,
      defaultMaxAttempts: defaults.maxAttempts,
      defaultQueue: defaults.queue,
    });
  });
  const missing = types.filter((t) => !descriptions.some((d) => d.name === t));
  if (missing.length > 0) v.add("type_descriptions", `must describe every type the agent runs, or none (missing: ${missing.join(", ")})`);
  v.throwIfAny();
  return out;
}

/** Attempt references of a request, checked (positive ids and attempts). */
function refs(field: string, items: readonly { taskId: bigint; attempt: number }[]): AttemptRef[] {
  const v = new Violations();
  if (items.length > MAX_AGENT_BATCH * 2) v.add(field, `must list at most ${MAX_AGENT_BATCH * 2} attempts`);
  items.forEach((a, i) => {
    if (a.taskId <= 0n) v.add(`${field}[${i}].task_id`, "must be a positive task id");
    if (a.attempt < 1) v.add(`${field}[${i}].attempt`, "must be 1 or more");
  });
  v.throwIfAny();
  return items.map((a) => ({ taskId: a.taskId.toString(), attempt: a.attempt }));
}

/** What an agent's result becomes (afterAttempt decides retry or not, as for a worker's). */
function outcomeOf(task: TaskRow, r: AttemptResult, config: AgentServiceDeps["config"], index: number): AttemptOutcome {
  const policy = task.backoff_base_ms !== null && task.backoff_max_ms !== null
    ? { baseMs: task.backoff_base_ms, maxMs: task.backoff_max_ms }
    : { baseMs: config.backoffBaseMs ?? 1_000, maxMs: config.backoffMaxMs ?? 300_000 };
  const retryInMs = backoffDelayMs({ ...policy, jitter: true }, task.attempts);
  switch (r.kind) {
    case AttemptResult_Kind.SUCCEEDED: {
      let result: unknown;
      try {
        result = r.resultJson === "" ? {} : JSON.parse(r.resultJson);
      } catch {
        throw InvalidArgumentError.of(`results[${index}].result_json`, "is not JSON");
      }
      const object = result !== null && typeof result === "object" && !Array.isArray(result) ? (result as Record<string, unknown>) : { value: result };
      return afterAttempt(task, { kind: "succeeded", result: storableResult(object, config.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES) });
    }
    case AttemptResult_Kind.CANCELLED:
      return afterAttempt(task, { kind: "cancelled" });
    case AttemptResult_Kind.TIMED_OUT:
      return afterAttempt(task, { kind: "failed", error: r.error || `timed out after ${formatDuration(task.timeout_ms)}`, permanent: false, retryInMs });
    case AttemptResult_Kind.INTERRUPTED:
      return afterAttempt(task, { kind: "failed", error: r.error || "interrupted: the agent shut down", permanent: false, retryInMs: 0 });
    case AttemptResult_Kind.FAILED:
      return afterAttempt(task, { kind: "failed", error: r.error || "failed", permanent: r.permanent, retryInMs });
    default:
      throw InvalidArgumentError.of(`results[${index}].kind`, "must be set");
  }
}
