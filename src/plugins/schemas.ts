import { z } from "zod";

/** One address or a non-empty list of them, always handled as a list. */
const addresses = z
  .union([z.email(), z.array(z.email()).min(1).max(100)])
  .transform((v) => (Array.isArray(v) ? v : [v]));

/**
 * Whether `address` is allowed by a sender allow-list of addresses and "@domain" entries
 * (case-insensitive); an empty list allows any sender.
 */
export function senderAllowed(address: string, allowed: readonly string[]): boolean {
  if (allowed.length === 0) return true;
  const a = address.toLowerCase();
  return allowed.some((entry) => {
    const e = entry.toLowerCase();
    return e.startsWith("@") ? a.endsWith(e) : a === e;
  });
}

/** Parameters of send_email, with `from` limited to the allow-list when one is configured. */
export function sendEmailParametersFor(allowedSenders: readonly string[]) {
  if (allowedSenders.length === 0) return sendEmailParameters;
  return sendEmailParameters.refine((p) => p.from === undefined || senderAllowed(p.from, allowedSenders), {
    message: `is not an allowed sender on this server (allowed: ${allowedSenders.join(", ")})`,
    path: ["from"],
  });
}

/** Parameters of send_email. */
export const sendEmailParameters = z.strictObject({
  to: addresses.describe("recipient address, or a list of them"),
  subject: z.string().min(1).max(998).describe("subject line"),
  body: z.string().max(1_000_000).describe("plain-text body"),
  html: z.string().max(1_000_000).optional().describe("HTML body, sent as an alternative to the text"),
  from: z.email().optional().describe("sender; defaults to the configured sender"),
  cc: addresses.optional().describe("carbon-copy address, or a list of them"),
});

/**
 * Parameters of run_query, for the targets this deployment configures: naming another target is
 * rejected when the task is created, and read_only=false only where the operator allows writes.
 */
export function runQueryParameters(targets: string[], writableTargets: string[]) {
  const known = targets.length > 0 ? targets.join(", ") : "none configured";
  return z
    .strictObject({
      sql: z.string().min(1).max(100_000).describe("one SQL statement"),
      params: z.array(z.union([z.string(), z.number(), z.boolean(), z.null()])).max(100).default([]).describe("values for $1, $2, ..."),
      target: z
        .string()
        .default("playground")
        .refine((t) => targets.includes(t), { message: `is not a configured target (known: ${known})` })
        .describe("name of a configured target database; never a connection string"),
      max_rows: z.number().int().min(1).max(1000).default(100).describe("most rows kept in the result"),
      read_only: z.boolean().default(true).describe("run in a read-only transaction (false only on writable targets)"),
    })
    .refine((p) => p.read_only || writableTargets.includes(p.target), {
      message: "read_only=false is not allowed on this target",
      path: ["read_only"],
    });
}

/** Parameters of shell. */
export const shellParameters = z.strictObject({
  command: z.string().min(1).max(65_536).describe("run with bash -c in its own process group"),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "not a valid variable name"), z.string()).optional().describe("extra environment variables"),
  cwd: z.string().min(1).optional().describe("working directory"),
});

/** Parameters of noop: finishes after an optional pause, optionally failing (demos and benchmarks). */
export const noopParameters = z.strictObject({
  sleep_ms: z.number().int().min(0).max(3_600_000).default(0).describe("how long to wait before finishing"),
  fail: z.string().min(1).optional().describe("fail every attempt with this message"),
  progress_steps: z.number().int().min(0).max(1000).optional().describe("report progress this many times, spread over sleep_ms (the benchmark's progress row)"),
});
