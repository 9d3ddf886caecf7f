import { Code, ConnectError } from "@connectrpc/connect";
import {
  IdempotencyConflictError,
  InvalidArgumentError,
  InvalidTransitionError,
  isDatabaseUnavailable,
  ScheduleExistsError,
  ScheduleNotFoundError,
  TaskNotFoundError,
  TaskTypeDisabledError,
} from "../errors.js";
import type { Logger } from "../logger.js";

/**
 * The one place domain errors become Connect codes. Anything unrecognised is Internal, logged here
 * with its stack, and answered with a generic message so internals do not leak to clients.
 */
export function toConnectError(err: unknown, logger: Logger): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof InvalidArgumentError) return new ConnectError(err.message, Code.InvalidArgument);
  if (err instanceof TaskNotFoundError || err instanceof ScheduleNotFoundError) return new ConnectError(err.message, Code.NotFound);
  if (err instanceof InvalidTransitionError || err instanceof TaskTypeDisabledError) {
    return new ConnectError(err.message, Code.FailedPrecondition);
  }
  if (err instanceof IdempotencyConflictError || err instanceof ScheduleExistsError) return new ConnectError(err.message, Code.AlreadyExists);
  if (isDatabaseUnavailable(err)) {
    logger.warn({ err: err instanceof Error ? err.message : String(err) }, "database unavailable");
    return new ConnectError("database unavailable, try again shortly", Code.Unavailable);
  }
  logger.error({ err }, "unexpected error handling request");
  return new ConnectError("internal error", Code.Internal);
}
