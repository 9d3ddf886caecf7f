import { labelPairs, labelProblems } from "../labels.js";
import { timestampDate, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import { InvalidArgumentError, type FieldViolation } from "../errors.js";
import { MAX_REASON_LENGTH, MAX_TEXT_LENGTH, queueNameProblem } from "../field-rules.js";
import type { TaskStatus as ProtoStatus } from "../gen/task/v1/task_pb.js";
import type { TaskStatus } from "../store/schema.js";
import { isStorableText } from "../store/storable-text.js";
import { statusFromProto } from "./convert.js";

/**
 * The field checks every request validator uses, so a rule ("text of at most 200 characters that
 * PostgreSQL can store", "a time between 1970 and 9999") is written once and says the same thing
 * wherever it applies. Validators collect into one Violations and throw once, with every problem.
 */

/** Longest expire_after of a task or a queue's default. */
export const MAX_EXPIRE_AFTER_MS = 366 * 24 * 3600 * 1000;

/** Most values a list filter of statuses, types or queues may carry. */
export const MAX_FILTER_VALUES = 100;

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

/** What is wrong with a text: longer than `max` characters, or not storable; undefined when neither. */
export function textProblem(text: string, max = MAX_TEXT_LENGTH): string | undefined {
  if (text.length > max) return `must be at most ${max} characters`;
  if (!isStorableText(text)) return UNSTORABLE_REASON;
  return undefined;
}

/** Times a request may name: PostgreSQL's timestamptz holds them, and they mean something (1970 to 9999). */
const MIN_TIME = Date.UTC(1970, 0, 1);
const MAX_TIME = Date.UTC(9999, 11, 31, 23, 59, 59);

/** Collects violations so a request reports all of its problems at once. */
export class Violations {
  readonly list: FieldViolation[] = [];

  add(field: string, reason: string): void {
    this.list.push({ field, reason });
  }

  /** One InvalidArgumentError listing every violation, if there is one. */
  throwIfAny(): void {
    if (this.list.length > 0) throw new InvalidArgumentError(this.list);
  }

  /** Optional text ("" allowed): at most `max` characters, storable. Whether it is fine. */
  text(field: string, text: string, max = MAX_TEXT_LENGTH): boolean {
    const problem = textProblem(text, max);
    if (problem) this.add(field, problem);
    return problem === undefined;
  }

  /** A required text: trimmed, then not empty, at most MAX_TEXT_LENGTH, storable. The trimmed text. */
  requiredText(field: string, text: string): string {
    const trimmed = text.trim();
    if (trimmed === "") this.add(field, "is required");
    else this.text(field, trimmed);
    return trimmed;
  }

  /** A reason to record: trimmed, at most MAX_REASON_LENGTH, storable. Null when empty or refused. */
  reason(field: string, text: string): string | null {
    const trimmed = text.trim();
    return this.text(field, trimmed, MAX_REASON_LENGTH) && trimmed !== "" ? trimmed : null;
  }

  /** A queue name ("" refused: say so before calling for an optional one). Whether it is fine. */
  queueName(field: string, name: string): boolean {
    const problem = queueNameProblem(name);
    if (problem) this.add(field, problem);
    return problem === undefined;
  }

  /** An expiry (expire_after): whole milliseconds from 1 s to MAX_EXPIRE_AFTER_MS; null when unset, undefined when refused. */
  expireAfter(field: string, d: Duration | undefined): number | null | undefined {
    if (!d) return null;
    const ms = Number(d.seconds) * 1000 + d.nanos / 1_000_000;
    if (!Number.isInteger(ms) || ms < 1000 || ms > MAX_EXPIRE_AFTER_MS) {
      this.add(field, "must be a whole number of milliseconds from 1s to 366d (unset: no expiry)");
      return undefined;
    }
    return ms;
  }

  /** A time between 1970 and 9999 with valid nanos, as a Date; undefined when unset or refused. */
  time(field: string, ts: Timestamp | undefined): Date | undefined {
    if (!ts) return undefined;
    const t = timestampDate(ts).getTime();
    if (Number.isNaN(t) || ts.nanos < 0 || ts.nanos > 999_999_999 || t < MIN_TIME || t > MAX_TIME) {
      this.add(field, "must be a time between 1970 and 9999");
      return undefined;
    }
    return new Date(t);
  }

  /** A created_after/created_before pair under `prefix`: each a time, the second later than the first. */
  createdRange(prefix: string, after: Timestamp | undefined, before: Timestamp | undefined): { createdAfter?: Date; createdBefore?: Date } {
    const createdAfter = this.time(`${prefix}created_after`, after);
    const createdBefore = this.time(`${prefix}created_before`, before);
    if (createdAfter && createdBefore && createdAfter >= createdBefore) this.add(`${prefix}created_before`, "must be later than created_after");
    return { createdAfter, createdBefore };
  }

  /** A filter's statuses: at most MAX_FILTER_VALUES, each a known one. The valid ones. */
  statuses(field: string, values: readonly ProtoStatus[]): TaskStatus[] {
    const out: TaskStatus[] = [];
    // Over a cap, the entries are not examined one by one: a huge list costs one check.
    if (values.length > MAX_FILTER_VALUES) this.add(field, `must list at most ${MAX_FILTER_VALUES} statuses`);
    else {
      values.forEach((s, i) => {
        const status = statusFromProto(s);
        if (status) out.push(status);
        else this.add(`${field}[${i}]`, `is not a valid status (${s})`);
      });
    }
    return out;
  }

  /** A filter's task types: at most MAX_FILTER_VALUES, each a non-blank text. The valid ones. */
  types(field: string, values: readonly string[]): string[] {
    const out: string[] = [];
    if (values.length > MAX_FILTER_VALUES) this.add(field, `must list at most ${MAX_FILTER_VALUES} types`);
    else {
      values.forEach((t, i) => {
        if (t.trim() === "") this.add(`${field}[${i}]`, "must not be empty");
        else if (this.text(`${field}[${i}]`, t)) out.push(t);
      });
    }
    return out;
  }

  /** A filter's queues: at most MAX_FILTER_VALUES, each a queue name. The valid ones. */
  queues(field: string, values: readonly string[]): string[] {
    const out: string[] = [];
    if (values.length > MAX_FILTER_VALUES) this.add(field, `must list at most ${MAX_FILTER_VALUES} queues`);
    else values.forEach((q, i) => this.queueName(`${field}[${i}]`, q) && out.push(q));
    return out;
  }

  /** Routing labels (a map from the API): the sorted "key=value" pairs the database stores; empty when any is invalid. */
  labels(field: string, labels: Readonly<Record<string, string>>): string[] {
    const problems = labelProblems(labels);
    problems.forEach((p) => this.add(field, p));
    return problems.length > 0 ? [] : labelPairs(labels);
  }

  /** Ids of tasks or schedules: at most `max` (`tooMany` says what to do instead), each positive. The valid ones. */
  ids(field: string, ids: readonly bigint[], max: number, kind: "task" | "schedule", tooMany = ""): string[] {
    const out: string[] = [];
    if (ids.length > max) this.add(field, `must list at most ${max} ids${tooMany}`);
    else ids.forEach((id, i) => (id <= 0n ? this.add(`${field}[${i}]`, `must be a positive ${kind} id`) : out.push(id.toString())));
    return out;
  }
}
