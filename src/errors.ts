/** One field that failed validation: where it is and what is wrong with it. */
export interface FieldViolation {
  field: string;
  reason: string;
}

/** Input that cannot be accepted; carries every field-level violation found. */
export class InvalidArgumentError extends Error {
  override name = "InvalidArgumentError";
  constructor(readonly violations: FieldViolation[]) {
    super(violations.map((v) => `${v.field}: ${v.reason}`).join("; "));
  }

  /** One violation. */
  static of(field: string, reason: string): InvalidArgumentError {
    return new InvalidArgumentError([{ field, reason }]);
  }
}

/** A task id that does not exist. */
export class TaskNotFoundError extends Error {
  override name = "TaskNotFoundError";
  constructor(readonly taskId: string) {
    super(`task ${taskId} not found`);
  }
}

/** The task is in a state that does not allow the operation (e.g. cancelling a finished task). */
export class InvalidTransitionError extends Error {
  override name = "InvalidTransitionError";
  constructor(
    readonly taskId: string,
    readonly status: string,
    readonly operation: string,
  ) {
    super(`cannot ${operation} task ${taskId}: it is ${status}`);
  }
}

/** A running task whose plugin cannot pause mid-run (it can be paused while waiting). */
export class NotPausableError extends Error {
  override name = "NotPausableError";
  constructor(readonly taskId: string, readonly taskType: string) {
    super(`cannot pause task ${taskId}: it is running and its type "${taskType}" cannot pause mid-run (it can be paused while waiting)`);
  }
}

/** A task type the operator has not enabled (e.g. shell without --enable-shell). */
export class TaskTypeDisabledError extends Error {
  override name = "TaskTypeDisabledError";
  constructor(readonly taskType: string, hint: string) {
    super(`task type "${taskType}" is disabled on this server: ${hint}`);
  }
}

/** An idempotency key reused with a request that differs from the one that made the task. */
export class IdempotencyConflictError extends Error {
  override name = "IdempotencyConflictError";
  constructor(
    readonly idempotencyKey: string,
    readonly taskId: string,
  ) {
    super(`idempotency key "${idempotencyKey}" was already used by task ${taskId} with a different request`);
  }
}

/** A schedule name that does not exist. */
export class ScheduleNotFoundError extends Error {
  override name = "ScheduleNotFoundError";
  constructor(readonly scheduleName: string) {
    super(`schedule "${scheduleName}" not found`);
  }
}

/** A schedule name that is already taken; the message names the field. */
export class ScheduleExistsError extends Error {
  override name = "ScheduleExistsError";
  constructor(readonly scheduleName: string) {
    super(`name: a schedule named "${scheduleName}" already exists`);
  }
}

/** An API token name that is already taken (revoked tokens keep theirs); the message names the field. */
export class TokenExistsError extends Error {
  override name = "TokenExistsError";
  constructor(readonly tokenName: string) {
    super(`name: a token named "${tokenName}" already exists`);
  }
}

/** A rate limit name that does not exist (migration 0031). */
export class RateLimitNotFoundError extends Error {
  override name = "RateLimitNotFoundError";
  constructor(readonly limitName: string) {
    super(`rate limit "${limitName}" not found`);
  }
}

/** An API token name that does not exist among the stored tokens. */
export class TokenNotFoundError extends Error {
  override name = "TokenNotFoundError";
  constructor(readonly tokenName: string) {
    super(`token "${tokenName}" not found`);
  }
}

/**
 * A caller whose role (or queue/type restriction) does not allow what it asked; PermissionDenied.
 * The message names the role needed and the one held: "requires role operator; token ci has reader".
 */
export class PermissionDeniedError extends Error {
  override name = "PermissionDeniedError";
}

/** The server is at a capacity limit for this kind of request; ResourceExhausted (retry shortly). */
export class ServerBusyError extends Error {
  override name = "ServerBusyError";
}

/** A failure that retrying cannot fix (e.g. invalid parameters): the task goes straight to FAILED. */
export class PermanentTaskError extends Error {
  override name = "PermanentTaskError";
}

/** Coerces a caught unknown into an Error once, so callers can rely on .message. */
export function toError(err: unknown): Error {
  if (err instanceof Error) return err;
  // A plugin may throw anything: a string reads as itself, an object as its JSON.
  if (typeof err === "object" && err !== null) {
    try {
      return new Error(`non-Error thrown: ${JSON.stringify(err)}`);
    } catch {
      return new Error(`non-Error thrown: ${String(err)}`);
    }
  }
  return new Error(String(err));
}

/** The message of anything thrown. */
export function errorMessage(err: unknown): string {
  return toError(err).message;
}

const unavailableCodes = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EAI_AGAIN", "57P01", "57P02", "57P03", "53300"]);

/**
 * Whether an error means PostgreSQL is unreachable or going away (as opposed to a bad query):
 * connection refused/reset, admin shutdown, "cannot connect now", pool connect time-out.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && (unavailableCodes.has(code) || code.startsWith("08"))) return true;
  if (/Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connect ECONNREFUSED/i.test(err.message)) {
    return true;
  }
  const nested = (err as { errors?: unknown }).errors; // AggregateError from dual-stack connects
  if (Array.isArray(nested) && nested.some(isDatabaseUnavailable)) return true;
  return err.cause !== undefined && err.cause !== err && isDatabaseUnavailable(err.cause);
}

/** A file beyond a size cap (per file, per task, or the total stored): nothing of it is kept. */
export class FileTooLargeError extends Error {
  override name = "FileTooLargeError";
  constructor(
    readonly name_: string,
    /** Which cap: "per-task" (TASK_FILES_MAX_TASK_BYTES) or "total" (TASK_FILES_MAX_TOTAL_BYTES). */
    readonly cap: "per-task" | "total",
    readonly limitBytes: number,
  ) {
    super(
      cap === "total"
        ? `file ${name_} refused: the files stored would exceed the total cap of ${limitBytes} bytes (TASK_FILES_MAX_TOTAL_BYTES)`
        : `file ${name_} refused: a task's files may hold at most ${limitBytes} bytes (TASK_FILES_MAX_TASK_BYTES)`,
    );
  }
}
