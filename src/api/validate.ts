import { createHash } from "node:crypto";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { InvalidArgumentError, type FieldViolation } from "../errors.js";
import type { CreateTaskRequest, ListTasksRequest } from "../gen/task/v1/task_pb.js";
import type { ResolvedTaskType, TaskTypeResolver } from "../plugins/types.js";
import type { TaskStatus } from "../store/schema.js";
import type { NewTask, TaskFilter } from "../store/tasks.js";
import { DEFAULT_QUEUE, QUEUE_NAME_PATTERN } from "../store/queues.js";
import { isStorableText } from "../store/storable-text.js";
import { durationToMs, statusFromProto } from "./convert.js";

export const MAX_PRIORITY = 1000;
export const MAX_ATTEMPTS_LIMIT = 100;
export const MAX_TIMEOUT_MS = 24 * 3600 * 1000;
/** Longest base or cap of a task's own backoff. */
export const MAX_BACKOFF_MS = 24 * 3600 * 1000;
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 1000;
/** Most values a list filter of statuses or types may carry. */
export const MAX_FILTER_VALUES = 100;
/** page_number skips the rows before its page, so deep pages cost their depth: past this, use page_token. */
export const MAX_PAGE_NUMBER_OFFSET = 100_000;
const MAX_PARAMETERS_BYTES = 256 * 1024;

/** PostgreSQL cannot store U+0000 or unpaired surrogates in text or jsonb; reject them up front rather than fail inside. */
export const UNSTORABLE_REASON = "must not contain NUL (\\u0000) or unpaired UTF-16 surrogate characters";

/**
 * The path of the first string PostgreSQL could not store (searching arrays and objects, keys
 * included), or undefined when there is none.
 */
export function findUnstorable(value: unknown, path: string): string | undefined {
  if (typeof value === "string") return isStorableText(value) ? undefined : path;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findUnstorable(value[i], `${path}[${i}]`);
      if (found) return found;
    }
    return undefined;
  }
  if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      const found = findUnstorable(k, path) ?? findUnstorable(v, `${path}.${k}`);
      if (found) return found;
    }
  }
  return undefined;
}

/** Whether a value holds a string PostgreSQL could not store. */
export function containsUnstorable(value: unknown): boolean {
  return findUnstorable(value, "") !== undefined;
}

/** run_at must fit PostgreSQL's timestamptz and mean something: years 1970 to 9999. */
const MIN_RUN_AT = Date.UTC(1970, 0, 1);
const MAX_RUN_AT = Date.UTC(9999, 11, 31, 23, 59, 59);

/** Collects violations so a request reports all of its problems at once. */
class Violations {
  readonly list: FieldViolation[] = [];
  add(field: string, reason: string): void {
    this.list.push({ field, reason });
  }
  throwIfAny(): void {
    if (this.list.length > 0) throw new InvalidArgumentError(this.list);
  }
}

/** What is wrong with a queue name, or undefined when it is a valid one (see QUEUE_NAME_PATTERN). */
export function queueNameProblem(name: string): string | undefined {
  if (name === "") return "is required";
  if (name.length > 64) return "must be at most 64 characters";
  if (!QUEUE_NAME_PATTERN.test(name)) return `"${name.slice(0, 64)}" is not a queue name: use a-z, 0-9, "_", "-", ".", starting with a letter or digit`;
  return undefined;
}

/**
 * Checks a create request and resolves it into a row to insert: type known and enabled, parameters
 * valid for the type (defaults applied), limits respected. `prefix` names the request in a batch.
 */
export function validateCreateTask<T extends ResolvedTaskType>(req: CreateTaskRequest, registry: TaskTypeResolver<T>, prefix = ""): NewTask {
  const v = new Violations();
  const name = req.name.trim();
  if (name.length === 0) v.add(`${prefix}name`, "is required");
  else if (name.length > 200) v.add(`${prefix}name`, "must be at most 200 characters");
  else if (containsUnstorable(name)) v.add(`${prefix}name`, UNSTORABLE_REASON);
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
  if (req.idempotencyKey.length > 200) v.add(`${prefix}idempotency_key`, "must be at most 200 characters");
  else if (containsUnstorable(req.idempotencyKey)) v.add(`${prefix}idempotency_key`, UNSTORABLE_REASON);
  const queueProblem = req.queue === "" ? undefined : queueNameProblem(req.queue);
  if (queueProblem) v.add(`${prefix}queue`, queueProblem);
  let runAt: Date | null = null;
  if (req.runAt) {
    runAt = timestampDate(req.runAt);
    const t = runAt.getTime();
    if (Number.isNaN(t) || t < MIN_RUN_AT || t > MAX_RUN_AT) v.add(`${prefix}run_at`, "must be a time between 1970 and 9999");
  }
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
    requestHash:
      idempotencyKey === null
        ? null
        : requestHash({
            name, type: req.type, parameters, priority: req.priority, maxAttempts, timeoutMs: resolvedTimeout, runAt: runAt?.toISOString() ?? null,
            // Only when set (backoff) or not the default (queue), so keys stored before either existed still match their replays.
            ...(backoff ? { backoff } : {}),
            ...(queue === DEFAULT_QUEUE ? {} : { queue }),
          }),
  };
}

/** A stable fingerprint of what a create request asks for (key order does not matter). */
function requestHash(value: unknown): string {
  return createHash("sha256").update(canonicalJson(value)).digest("hex");
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
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
/** A timestamp filter as a Date; undefined when unset or (with a violation) out of range. */
function validTimestamp(v: Violations, field: string, ts: Timestamp | undefined): Date | undefined {
  if (!ts) return undefined;
  const t = timestampDate(ts).getTime();
  if (Number.isNaN(t) || ts.nanos < 0 || ts.nanos > 999_999_999 || t < MIN_RUN_AT || t > MAX_RUN_AT) {
    v.add(field, "must be a time between 1970 and 9999");
    return undefined;
  }
  return new Date(t);
}

export function validateListTasks(req: ListTasksRequest): TaskFilter & { pageSize: number; pageNumber: number } {
  const v = new Violations();
  const statuses: TaskStatus[] = [];
  // Over a cap, the entries are not examined one by one: a huge list costs one check.
  if (req.statuses.length > MAX_FILTER_VALUES) v.add("statuses", `must list at most ${MAX_FILTER_VALUES} statuses`);
  else {
    req.statuses.forEach((s, i) => {
      const status = statusFromProto(s);
      if (status) statuses.push(status);
      else v.add(`statuses[${i}]`, `is not a valid status (${s})`);
    });
  }
  if (req.ids.length > MAX_PAGE_SIZE) v.add("ids", `must list at most ${MAX_PAGE_SIZE} ids`);
  else {
    req.ids.forEach((id, i) => {
      if (id <= 0n) v.add(`ids[${i}]`, "must be a positive task id");
    });
  }
  if (req.scheduleIds.length > MAX_PAGE_SIZE) v.add("schedule_ids", `must list at most ${MAX_PAGE_SIZE} ids`);
  else {
    req.scheduleIds.forEach((id, i) => {
      if (id <= 0n) v.add(`schedule_ids[${i}]`, "must be a positive schedule id");
    });
  }
  if (req.types.length > MAX_FILTER_VALUES) v.add("types", `must list at most ${MAX_FILTER_VALUES} types`);
  else {
    req.types.forEach((t, i) => {
      if (t.trim() === "") v.add(`types[${i}]`, "must not be empty");
      else if (t.length > 200) v.add(`types[${i}]`, "must be at most 200 characters");
      else if (containsUnstorable(t)) v.add(`types[${i}]`, UNSTORABLE_REASON);
    });
  }
  if (req.queues.length > MAX_FILTER_VALUES) v.add("queues", `must list at most ${MAX_FILTER_VALUES} queues`);
  else {
    req.queues.forEach((q, i) => {
      const problem = queueNameProblem(q);
      if (problem) v.add(`queues[${i}]`, problem);
    });
  }
  if (req.namePrefix.length > 200) v.add("name_prefix", "must be at most 200 characters");
  else if (containsUnstorable(req.namePrefix)) v.add("name_prefix", UNSTORABLE_REASON);
  const createdAfter = validTimestamp(v, "created_after", req.createdAfter);
  const createdBefore = validTimestamp(v, "created_before", req.createdBefore);
  if (createdAfter && createdBefore && createdAfter >= createdBefore) v.add("created_before", "must be later than created_after");
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
    types: req.types,
    ids: req.ids.map(String),
    scheduleIds: req.scheduleIds.map(String),
    queues: req.queues,
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
