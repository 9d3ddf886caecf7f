import { z } from "zod";

/** One address or a non-empty list of them, always handled as a list. */
const addresses = z
  .union([z.email(), z.array(z.email()).min(1).max(100)])
  .transform((v) => (Array.isArray(v) ? v : [v]));

/** Parameters of send_email. */
export const sendEmailParameters = z.strictObject({
  to: addresses.describe("recipient address, or a list of them"),
  subject: z.string().min(1).max(998).describe("subject line"),
  body: z.string().max(1_000_000).describe("plain-text body"),
  html: z.string().max(1_000_000).optional().describe("HTML body, sent as an alternative to the text"),
  from: z.email().optional().describe("sender; defaults to the configured sender"),
  cc: addresses.optional().describe("carbon-copy address, or a list of them"),
});

/** Parameters of run_query. */
export const runQueryParameters = z.strictObject({
  sql: z.string().min(1).max(100_000).describe("one SQL statement"),
  params: z.array(z.union([z.string(), z.number(), z.boolean(), z.null()])).max(100).default([]).describe("values for $1, $2, ..."),
  target: z
    .string()
    .regex(/^[a-z][a-z0-9_]*$/, "must be a configured target name (lowercase letters, digits, _)")
    .default("playground")
    .describe("name of a configured target database; never a connection string"),
  max_rows: z.number().int().min(1).max(1000).default(100).describe("most rows kept in the result"),
});

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
});
