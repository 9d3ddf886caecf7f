/** Result size when the configuration gives none (TASK_MAX_RESULT_BYTES's default). */
export const DEFAULT_MAX_RESULT_BYTES = 1024 * 1024;

import { errorMessage, isDatabaseUnavailable } from "../errors.js";
import type { Logger } from "../logger.js";
import { permanentFailure, type AttemptOutcome } from "../store/lifecycle/index.js";
import { storableText } from "../store/storable-text.js";

function sanitize(value: unknown): unknown {
  if (typeof value === "string") return storableText(value);
  if (Array.isArray(value)) return value.map(sanitize);
  if (value && typeof value === "object" && !(value instanceof Date)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [storableText(k), sanitize(v)]));
  }
  return value;
}

/**
 * A plugin's result as it can be stored: characters jsonb cannot hold replaced by U+FFFD, and a
 * result larger than `maxBytes` of JSON replaced by a note saying so (plugins that can cut their
 * own result, like run_query, stay under the cap themselves).
 */
export function storableResult(result: Record<string, unknown>, maxBytes: number): Record<string, unknown> {
  const clean = sanitize(result) as Record<string, unknown>;
  const bytes = Buffer.byteLength(JSON.stringify(clean));
  if (bytes <= maxBytes) return clean;
  return { result_omitted: `the result was ${bytes} bytes of JSON, more than the ${maxBytes}-byte cap (TASK_MAX_RESULT_BYTES)`, result_bytes: bytes, truncated: true };
}

/**
 * Records an outcome with `record`; if the database refuses it for a reason other than an outage
 * (those `record` waits out or propagates), records instead a permanent failure that says why,
 * rather than leave the task RUNNING until the reconciler calls it "worker lost".
 */
export async function recordOrFailWithReason<T>(
  record: (outcome: AttemptOutcome) => Promise<T>,
  outcome: AttemptOutcome,
  attempt: number,
  logger: Logger,
): Promise<{ recorded: T; outcome: AttemptOutcome }> {
  try {
    return { recorded: await record(outcome), outcome };
  } catch (err) {
    if (isDatabaseUnavailable(err)) throw err;
    const message = `could not record the attempt's outcome: ${errorMessage(err)}`;
    logger.warn({ err: errorMessage(err), outcome: outcome.kind }, message);
    const failed = permanentFailure(attempt, message);
    return { recorded: await record(failed), outcome: failed };
  }
}
