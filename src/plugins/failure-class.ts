import { PermanentTaskError } from "../errors.js";

/**
 * Which failures retrying cannot fix. A task attempt that fails with one of these goes straight to
 * FAILED instead of spending its remaining attempts and backoff on the same answer. Anything not
 * known to be permanent stays retryable: a wrong "retry" costs an attempt, a wrong "permanent" loses
 * work.
 */

/**
 * SQLSTATE classes and codes that a retry of the same statement meets again: syntax errors and
 * undefined objects or privileges (class 42), bad data (22), constraint violations (23), writes in
 * a read-only transaction (25006), unsupported features (0A), bad database or schema names and
 * credentials (3D, 3F, 28). Connection failures (08), serialization failures and deadlocks (40),
 * lack of resources (53), operator intervention and timeouts (57) and the rest stay retryable.
 */
const PERMANENT_SQLSTATE_CLASSES = new Set(["42", "22", "23", "0A", "3D", "3F", "28"]);
const PERMANENT_SQLSTATES = new Set(["25006"]);

/** Whether a PostgreSQL error (with a SQLSTATE `code`) would fail the same way if retried. */
export function isPermanentSqlError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== "string" || !/^[0-9A-Z]{5}$/.test(code)) return false;
  return PERMANENT_SQLSTATES.has(code) || PERMANENT_SQLSTATE_CLASSES.has(code.slice(0, 2));
}

/**
 * Whether an SMTP failure (nodemailer's error) would fail the same way if retried: the server
 * answered with a 5xx reply (mailbox unknown, message refused, authentication rejected), or the
 * envelope or message could not be built. 4xx replies are temporary by definition (RFC 5321
 * 4.2.1) and connection errors carry no reply code: both stay retryable.
 */
export function isPermanentSmtpError(err: unknown): boolean {
  const e = err as { responseCode?: unknown; code?: unknown } | null;
  if (typeof e?.responseCode === "number") return e.responseCode >= 500 && e.responseCode < 600;
  return e?.code === "EENVELOPE" || e?.code === "EMESSAGE";
}

/** Rethrows `err` as a PermanentTaskError (same message, the original as cause) when `permanent` says so. */
export function classifyFailure(err: unknown, permanent: (err: unknown) => boolean): unknown {
  if (!(err instanceof Error) || err instanceof PermanentTaskError || !permanent(err)) return err;
  const code = (err as { code?: unknown }).code;
  const responseCode = (err as { responseCode?: unknown }).responseCode;
  const suffix = typeof responseCode === "number" ? "" : typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? ` (SQLSTATE ${code})` : "";
  return new PermanentTaskError(`${err.message}${suffix}`, { cause: err });
}
