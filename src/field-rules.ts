/**
 * What a user may write in a text field or a queue name: the API enforces these rules
 * (src/api/fields.ts) and the dashboard and the configuration apply the same ones, so each has one
 * owner. The dashboard imports this module (ui/tsconfig.json): keep it free of Node imports.
 */

/** Longest name, type, idempotency key or name filter a request may carry. */
export const MAX_TEXT_LENGTH = 200;

/** Longest reason a cancel records. */
export const MAX_REASON_LENGTH = 500;

/**
 * A queue name: lower-case letters, digits, '_', '-', '.', starting with a letter or digit, 1-64
 * characters. Migration 0012's checks on tasks.queue and queues.name say the same in SQL (migrations
 * are forward-only); test/queue-names.test.ts holds the two together.
 */
export const QUEUE_NAME_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

/** Longest queue name (as QUEUE_NAME_PATTERN). */
export const MAX_QUEUE_NAME_LENGTH = 64;

/** QUEUE_NAME_PATTERN in words, for messages. */
export const QUEUE_NAME_RULE = "1-64 of a-z, 0-9, _ - . starting with a letter or digit";

/** What is wrong with a queue name, or undefined when it is a valid one. */
export function queueNameProblem(name: string): string | undefined {
  if (name === "") return "is required";
  if (name.length > MAX_QUEUE_NAME_LENGTH) return `must be at most ${MAX_QUEUE_NAME_LENGTH} characters`;
  if (!QUEUE_NAME_PATTERN.test(name)) {
    return `"${name.slice(0, MAX_QUEUE_NAME_LENGTH)}" is not a queue name: use a-z, 0-9, "_", "-", ".", starting with a letter or digit`;
  }
  return undefined;
}
