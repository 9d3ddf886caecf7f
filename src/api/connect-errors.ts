import { Code, ConnectError } from "@connectrpc/connect";
import {
  IdempotencyConflictError,
  InvalidArgumentError,
  InvalidTransitionError,
  isDatabaseUnavailable,
  NotPausableError,
  PermissionDeniedError,
  ScheduleExistsError,
  ScheduleNotFoundError,
  ServerBusyError,
  TaskNotFoundError,
  TaskTypeDisabledError,
  TokenExistsError,
  TokenNotFoundError,
  RateLimitNotFoundError,
} from "../errors.js";
import { BadRequestSchema } from "../gen/google/rpc/error_details_pb.js";
import type { Logger } from "../logger.js";

/**
 * The one place domain errors become Connect codes (and field violations google.rpc.BadRequest details). Anything unrecognised is Internal, logged here
 * with its stack, and answered with a generic message so internals do not leak to clients.
 */
export function toConnectError(err: unknown, logger: Logger): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof InvalidArgumentError) {
    // The message names every field for people; the detail carries them for programs (AIP-193).
    const fieldViolations = err.violations.map((v) => ({ field: v.field, description: v.reason }));
    return new ConnectError(err.message, Code.InvalidArgument, undefined, [{ desc: BadRequestSchema, value: { fieldViolations } }]);
  }
  if (err instanceof TaskNotFoundError || err instanceof ScheduleNotFoundError || err instanceof TokenNotFoundError || err instanceof RateLimitNotFoundError) return new ConnectError(err.message, Code.NotFound);
  if (err instanceof InvalidTransitionError || err instanceof TaskTypeDisabledError || err instanceof NotPausableError) {
    return new ConnectError(err.message, Code.FailedPrecondition);
  }
  if (err instanceof PermissionDeniedError) return new ConnectError(err.message, Code.PermissionDenied);
  if (err instanceof IdempotencyConflictError || err instanceof ScheduleExistsError || err instanceof TokenExistsError) return new ConnectError(err.message, Code.AlreadyExists);
  if (err instanceof ServerBusyError) return new ConnectError(err.message, Code.ResourceExhausted);
  if (isDatabaseUnavailable(err)) {
    logger.warn({ err: err instanceof Error ? err.message : String(err) }, "database unavailable");
    return new ConnectError("database unavailable, try again shortly", Code.Unavailable);
  }
  logger.error({ err }, "unexpected error handling request");
  return new ConnectError("internal error", Code.Internal);
}
