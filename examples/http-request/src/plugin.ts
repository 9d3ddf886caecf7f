import { definePlugin, PermanentTaskError, z } from "task-service";

/** Status codes worth another attempt: the server is overloaded, restarting or rate-limiting us. */
const RETRYABLE_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

/** How much of the response body is kept in the task's result. */
const BODY_PREVIEW_BYTES = 2_048;

const parameters = z.strictObject({
  method: z.enum(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]).default("POST").describe("HTTP method"),
  url: z.url({ protocol: /^https?$/ }).describe("http:// or https:// URL to call"),
  headers: z.record(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, "not a valid header name"), z.string().max(8_192)).default({}).describe("request headers"),
  body: z.string().max(1_000_000).optional().describe("request body (sent as is; set content-type in headers)"),
  expected_status: z.array(z.number().int().min(100).max(599)).min(1).max(50).optional().describe("status codes that count as success (default: any 2xx)"),
  timeout_ms: z.number().int().min(1).max(300_000).default(10_000).describe("time limit of one request"),
});

/** The parameters of an http_request task, as the client sends them. */
export type HttpRequestParameters = z.input<typeof parameters>;

/**
 * Calls a URL, as a webhook delivery does. A 2xx (or one of expected_status) succeeds; 408, 429 and
 * 5xx are retried with backoff; any other status fails the task at once (a retry would get the same
 * answer). Every attempt of one task sends the same Idempotency-Key, so a receiver can drop a
 * delivery it already processed (execution is at-least-once).
 */
export const httpRequest = definePlugin({
  name: "http_request",
  description: "Calls an HTTP endpoint (a webhook); retries 408/429/5xx and network errors, fails at once on other unexpected statuses.",
  parameters,
  defaults: { timeoutMs: 60_000, maxAttempts: 5 },
  async run(params, ctx) {
    const started = Date.now();
    // Our own per-request limit, plus the attempt's signal (task timeout, cancel, worker shutdown).
    const requestTimeout = AbortSignal.timeout(params.timeout_ms);
    const signal = AbortSignal.any([ctx.signal, requestTimeout]);
    const headers = new Headers(params.headers);
    if (!headers.has("idempotency-key")) headers.set("idempotency-key", `task-${ctx.taskId}`);
    headers.set("x-task-attempt", String(ctx.attempt));
    ctx.output.write("system", `${params.method} ${params.url} (attempt ${ctx.attempt})`);
    let response: Response;
    try {
      response = await fetch(params.url, { method: params.method, headers, body: params.body, signal, redirect: "manual" });
    } catch (err) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      if (requestTimeout.aborted) throw new Error(`request timed out after ${params.timeout_ms} ms`);
      throw new Error(`request failed: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`);
    }
    const text = await readPreview(response, signal).catch(() => "");
    const durationMs = Date.now() - started;
    ctx.output.write("stdout", `${response.status} ${response.statusText} in ${durationMs} ms`);
    ctx.logger.info({ status: response.status, durationMs }, "http_request answered");
    const expected = params.expected_status ? params.expected_status.includes(response.status) : response.status >= 200 && response.status < 300;
    if (expected) {
      return { status: response.status, duration_ms: durationMs, content_type: response.headers.get("content-type"), body: text };
    }
    const message = `unexpected status ${response.status}${text ? `: ${text.slice(0, 200)}` : ""}`;
    if (RETRYABLE_STATUS.has(response.status)) throw new Error(message);
    throw new PermanentTaskError(message);
  },
});

/** The first BODY_PREVIEW_BYTES of the body as text; the rest is not read. */
async function readPreview(response: Response, signal: AbortSignal): Promise<string> {
  if (!response.body) return "";
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const onAbort = () => void reader.cancel().catch(() => undefined);
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    while (size < BODY_PREVIEW_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    await reader.cancel().catch(() => undefined);
  }
  return new TextDecoder().decode(Buffer.concat(chunks).subarray(0, BODY_PREVIEW_BYTES));
}
