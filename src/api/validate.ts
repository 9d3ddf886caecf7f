import { InvalidArgumentError } from "../errors.js";
import type { CreateTaskRequest, ListTasksRequest } from "../gen/task/v1/task_pb.js";
import type { ResolvedTaskType, TaskTypeResolver } from "../plugins/types.js";
import type { NewTask, TaskFilter, UniqueWhile } from "../store/tasks.js";
import { DEFAULT_QUEUE } from "../store/queues.js";
import { durationToMs } from "./convert.js";
import { fingerprint } from "../fingerprint.js";
import { findUnstorable, UNSTORABLE_REASON, Violations } from "./fields.js";
import { evaluateKeyTemplate, keyProblem, parseKeyTemplate } from "../key-template.js";

export const MAX_PRIORITY = 1000;
export const MAX_ATTEMPTS_LIMIT = 100;
export const MAX_TIMEOUT_MS = 24 * 3600 * 1000;
/** Longest base or cap of a task's own backoff. */
export const MAX_BACKOFF_MS = 24 * 3600 * 1000;
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 1000;
/** page_number skips the rows before its page, so deep pages cost their depth: past this, use page_token. */
export const MAX_PAGE_NUMBER_OFFSET = 100_000;
/** Longest unique_while window (as expire_after's). */
export const MAX_UNIQUE_WINDOW_MS = 366 * 24 * 3600 * 1000;
const MAX_PARAMETERS_BYTES = 256 * 1024;

/**
 * Checks a create request and resolves it into a row to insert: type known and enabled, parameters
 * valid for the type (defaults applied), limits respected. `prefix` names the request in a batch.
 */
export function validateCreateTask<T extends ResolvedTaskType>(req: CreateTaskRequest, registry: TaskTypeResolver<T>, prefix = ""): NewTask {
  const v = new Violations();
  const name = v.requiredText(`${prefix}name`, req.name);
  if (req.type === "") v.add(`${prefix}type`, "is required");
  if (!Number.isInteger(req.priority) || Math.abs(req.priority) > MAX_PRIORITY) {
    v.add(`${prefix}priority`, `must be between -${MAX_PRIORITY} and ${MAX_PRIORITY}`);
  }
  if (req.maxAttempts < 0 || req.maxAttempts > MAX_ATTEMPTS_LIMIT) {
    v.add(`${prefix}max_attempts`, `must be between 1 and ${MAX_ATTEMPTS_LIMIT} (0 for the type's default)`);
  }
  let timeoutMs: number | undefined;
  if (req.timeout) {
    timeoutMs = durationToMs(req.timeout);
    if (!(timeoutMs >= 1) || timeoutMs > MAX_TIMEOUT_MS) v.add(`${prefix}timeout`, "must be between 1ms and 24h");
  }
  v.text(`${prefix}idempotency_key`, req.idempotencyKey);
  const keyIssue = req.key === "" ? undefined : keyProblem(req.key);
  if (keyIssue) v.add(`${prefix}key`, `the key ${keyIssue}`);
  if (req.queue !== "") v.queueName(`${prefix}queue`, req.queue);
  const runAt = v.time(`${prefix}run_at`, req.runAt) ?? null;
  const expireAfterMs = v.expireAfter(`${prefix}expire_after`, req.expireAfter);
  const uniqueWhile = uniqueWhileOf(v, `${prefix}unique_while`, req);
  const labels = v.labels(`${prefix}labels`, req.labels);
  const units = req.units === 0 ? 1 : req.units;
  if (!Number.isInteger(units) || units < 1 || units > MAX_TASK_UNITS) v.add(`${prefix}units`, `must be between 1 and ${MAX_TASK_UNITS} (0 for 1)`);
  let backoff: { baseMs: number; maxMs: number } | null = null;
  if (req.backoff) {
    const baseMs = req.backoff.base ? durationToMs(req.backoff.base) : Number.NaN;
    const maxMs = req.backoff.max ? durationToMs(req.backoff.max) : Number.NaN;
    const baseOk = baseMs >= 1 && baseMs <= MAX_BACKOFF_MS && Number.isInteger(baseMs);
    const maxOk = maxMs >= 1 && maxMs <= MAX_BACKOFF_MS && Number.isInteger(maxMs);
    if (!baseOk) v.add(`${prefix}backoff.base`, "is required: a whole number of milliseconds between 1ms and 24h");
    if (!maxOk) v.add(`${prefix}backoff.max`, "is required: a whole number of milliseconds between 1ms and 24h");
    if (baseOk && maxOk && baseMs > maxMs) v.add(`${prefix}backoff.max`, "must be at least backoff.base");
    if (baseOk && maxOk && baseMs <= maxMs) backoff = { baseMs, maxMs };
  }
  if (req.parameters && JSON.stringify(req.parameters).length > MAX_PARAMETERS_BYTES) {
    v.add(`${prefix}parameters`, `must be at most ${MAX_PARAMETERS_BYTES} bytes of JSON`);
  } else {
    const unstorableAt = findUnstorable(req.parameters, `${prefix}parameters`);
    if (unstorableAt) v.add(unstorableAt, UNSTORABLE_REASON);
  }
  v.throwIfAny();

  // Type and parameter checks come after the cheap ones so one message lists what is fixable at once.
  const plugin = registry.resolve(req.type, `${prefix}type`);
  const parameters = registry.parse(plugin, req.parameters ?? {}, `${prefix}parameters`);
  const maxAttempts = req.maxAttempts || plugin.defaults.maxAttempts;
  // No queue named: the type's default queue (registered with it), else `default`.
  const queue = req.queue || plugin.defaults.queue || DEFAULT_QUEUE;
  const resolvedTimeout = Math.round(timeoutMs ?? plugin.defaults.timeoutMs);
  const idempotencyKey = req.idempotencyKey === "" ? null : req.idempotencyKey;
  return {
    name,
    type: req.type,
    parameters,
    priority: req.priority,
    maxAttempts,
    timeoutMs: resolvedTimeout,
    runAt,
    queue,
    idempotencyKey,
    backoff,
    expireAfterMs: expireAfterMs ?? null,
    // Empty: derived later from the queue's key template, if it has one (deriveKeys).
    key: req.key === "" ? null : req.key,
    uniqueWhile,
    labels: labels.length > 0 ? labels : null,
    units,
    requestHash:
      idempotencyKey === null
        ? null
        : requestHash({
            name, type: req.type, parameters, priority: req.priority, maxAttempts, timeoutMs: resolvedTimeout, runAt: runAt?.toISOString() ?? null,
            // Only when set (backoff) or not the default (queue), so keys stored before either existed still match their replays.
            ...(backoff ? { backoff } : {}),
            ...(expireAfterMs ? { expireAfterMs } : {}),
            ...(queue === DEFAULT_QUEUE ? {} : { queue }),
            ...(req.key === "" ? {} : { key: req.key }),
            ...(uniqueWhile ? { uniqueWhile } : {}),
            ...(labels.length > 0 ? { labels } : {}),
            ...(units === 1 ? {} : { units }),
          }),
  };
}

/**
 * Gives each task created without a key the key its queue's template derives from its parameters
 * (`templates`: by queue, store/queues.ts keyTemplates). A value the template needs that is
 * missing refuses the whole request, naming the parameter, before anything is written.
 */
export function deriveKeys(tasks: NewTask[], templates: Map<string, string>, prefix: (i: number) => string): NewTask[] {
  if (templates.size === 0) return tasks;
  const v = new Violations();
  const derived = tasks.map((task, i) => {
    const source = task.key ? undefined : templates.get(task.queue ?? DEFAULT_QUEUE);
    if (source === undefined) return task;
    const result = evaluateKeyTemplate(parseKeyTemplate(source), task.parameters, `${prefix(i)}parameters`);
    if ("error" in result) {
      v.add(result.field, result.error);
      return task;
    }
    return { ...task, key: result.key };
  });
  v.throwIfAny();
  return derived;
}

/** unique_while: unset (null), "while unfinished", or a window of 1 s to 366 d; refusals go to `v`. */
function uniqueWhileOf(v: Violations, field: string, req: CreateTaskRequest): UniqueWhile | null {
  const mode = req.uniqueWhile?.mode;
  if (!req.uniqueWhile) return null;
  if (mode?.case === "unfinished" && mode.value) return { unfinished: true };
  if (mode?.case === "window") {
    const windowMs = durationToMs(mode.value);
    if (Number.isInteger(windowMs) && windowMs >= 1000 && windowMs <= MAX_UNIQUE_WINDOW_MS) return { windowMs };
    v.add(`${field}.window`, "must be a whole number of milliseconds from 1s to 366d");
    return null;
  }
  v.add(field, "must set unfinished (true) or window");
  return null;
}

/**
 * unique_while needs a key (given, or derived from the queue's template): after deriveKeys, before
 * anything is written; InvalidArgument naming each task without one.
 */
export function requireUniqueKeys(tasks: NewTask[], prefix: (i: number) => string): void {
  const v = new Violations();
  tasks.forEach((t, i) => {
    if (t.uniqueWhile && !t.key) v.add(`${prefix(i)}unique_while`, "needs a key: set key (or give the queue a key template)");
  });
  v.throwIfAny();
}

/** Most units a task may take from its rate limit (the largest burst a limit may have, migration 0031). */
export const MAX_TASK_UNITS = 1_000_000;

/**
 * A task's units must fit in the burst of the rate limit it is under when created (`limits`: by
 * "queue\u001ftype", store/rate-limits.ts limitsOf), else it could never start: InvalidArgument
 * naming each, before anything is written. A limit changed later is not checked against waiting
 * tasks: those wait, and their wait_reason says so.
 */
export function requireUnitsFit(tasks: NewTask[], limits: Map<string, { name: string; burst: number }>, prefix: (i: number) => string): void {
  const v = new Violations();
  tasks.forEach((t, i) => {
    const limit = limits.get(`${t.queue ?? DEFAULT_QUEUE}\u001f${t.type}`);
    if (limit && (t.units ?? 1) > limit.burst) v.add(`${prefix(i)}units`, `must be at most ${limit.burst}, the burst of rate limit ${limit.name}`);
  });
  v.throwIfAny();
}

/** A stable fingerprint of what a create request asks for (key order does not matter). */
function requestHash(value: unknown): string {
  return fingerprint(value);
}


/** A task id from a request: positive, or InvalidArgument naming the field. */
export function validateTaskId(id: bigint, field = "id"): string {
  if (id <= 0n) throw InvalidArgumentError.of(field, "must be a positive task id");
  return id.toString();
}

const PAGE_TOKEN_PREFIX = "v1:";

/** An opaque page token for the page after the task with this id. */
export function encodePageToken(lastId: string): string {
  return Buffer.from(`${PAGE_TOKEN_PREFIX}${lastId}`).toString("base64url");
}

function decodePageToken(token: string): string | undefined {
  const text = Buffer.from(token, "base64url").toString("utf8");
  const id = text.startsWith(PAGE_TOKEN_PREFIX) ? text.slice(PAGE_TOKEN_PREFIX.length) : "";
  return /^[1-9]\d{0,18}$/.test(id) ? id : undefined;
}

/** Checks list filters and paging and turns them into a store filter. */
export function validateListTasks(req: ListTasksRequest): TaskFilter & { pageSize: number; pageNumber: number } {
  const v = new Violations();
  const statuses = v.statuses("statuses", req.statuses);
  const ids = v.ids("ids", req.ids, MAX_PAGE_SIZE, "task");
  const scheduleIds = v.ids("schedule_ids", req.scheduleIds, MAX_PAGE_SIZE, "schedule");
  const types = v.types("types", req.types);
  const queues = v.queues("queues", req.queues);
  v.text("name_prefix", req.namePrefix);
  const { createdAfter, createdBefore } = v.createdRange("", req.createdAfter, req.createdBefore);
  if (req.pageSize < 0 || req.pageSize > MAX_PAGE_SIZE) v.add("page_size", `must be between 1 and ${MAX_PAGE_SIZE} (0 for ${DEFAULT_PAGE_SIZE})`);
  if (req.pageNumber < 0) v.add("page_number", "must be 1 or more");
  else if (req.pageNumber > 1 && (req.pageNumber - 1) * (req.pageSize || DEFAULT_PAGE_SIZE) >= MAX_PAGE_NUMBER_OFFSET) {
    v.add("page_number", `must start within the first ${MAX_PAGE_NUMBER_OFFSET} tasks; page deeper with page_token`);
  }
  if (req.pageNumber > 0 && req.pageToken !== "") v.add("page_token", "cannot be combined with page_number");
  let beforeId: string | undefined;
  if (req.pageToken !== "") {
    beforeId = decodePageToken(req.pageToken);
    if (beforeId === undefined) v.add("page_token", "is malformed");
  }
  v.throwIfAny();
  const pageSize = req.pageSize || DEFAULT_PAGE_SIZE;
  const pageNumber = req.pageNumber;
  return {
    statuses,
    types,
    ids,
    scheduleIds,
    queues,
    namePrefix: req.namePrefix || undefined,
    createdAfter,
    createdBefore,
    beforeId,
    offset: pageNumber > 1 ? (pageNumber - 1) * pageSize : undefined,
    limit: pageSize,
    pageSize,
    pageNumber,
  };
}
