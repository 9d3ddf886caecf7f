/**
 * OpenTelemetry's own diagnostics (`diag`: an exporter that cannot reach its collector, spans
 * dropped from a full queue) written through the project's logger while tracing is on. Without a
 * diag logger the SDK drops them silently, so a collector that is down looks like "no traces".
 * A collector that stays down fails every export (one a second under load), so each message is
 * logged once and then at most once a window, with how many were held back meanwhile (`suppressed`).
 */
import { inspect } from "node:util";
import { DiagLogLevel, type DiagLogger } from "@opentelemetry/api";
import type { Logger } from "./logger.js";

/** How long a repeated diagnostic is held back after it was last logged. */
export const DIAG_REPEAT_WINDOW_MS = 60_000;

/** The diag level that passes what the logger's level passes (pino level names, LOG_LEVELS). */
export function diagLevelOf(level: string): DiagLogLevel {
  switch (level) {
    case "trace":
      return DiagLogLevel.VERBOSE;
    case "debug":
      return DiagLogLevel.DEBUG;
    case "info":
      return DiagLogLevel.INFO;
    case "warn":
      return DiagLogLevel.WARN;
    case "error":
    case "fatal":
      return DiagLogLevel.ERROR;
    default:
      return DiagLogLevel.NONE;
  }
}

/**
 * The SDK hands a failed export to diag.error as JSON text (core's default global error handler
 * stringifies the exception, stack and all): log its message and code, not the blob.
 */
function describe(message: string): { msg: string; fields: Record<string, unknown> } {
  if (message.startsWith("{")) {
    try {
      const parsed = JSON.parse(message) as { message?: unknown; code?: unknown };
      if (typeof parsed.message === "string") return { msg: parsed.message, fields: parsed.code === undefined ? {} : { code: parsed.code } };
    } catch {
      // Not JSON after all: logged as it is.
    }
  }
  return { msg: message, fields: {} };
}

/**
 * A DiagLogger writing to `logger` (give it a child with `component: "otel"`). Messages that differ
 * only in their numbers (ports, counts, delays) count as the same message for the repeat window.
 */
export function diagLoggerOf(logger: Logger, windowMs = DIAG_REPEAT_WINDOW_MS, now: () => number = Date.now): DiagLogger {
  const seen = new Map<string, { loggedAt: number; held: number }>();
  const write =
    (level: "error" | "warn" | "info" | "debug" | "trace") =>
    (message: string, ...args: unknown[]) => {
      const { msg, fields } = describe(message);
      const key = `${level} ${msg.replace(/\d+/g, "#")}`;
      const at = now();
      const last = seen.get(key);
      if (last && at - last.loggedAt < windowMs) {
        last.held++;
        return;
      }
      seen.set(key, { loggedAt: at, held: 0 });
      // Extra arguments can be whole export requests (debug): kept short.
      const extra = args.length > 0 ? { args: args.map((a) => (a instanceof Error ? a.message : inspect(a, { depth: 1, breakLength: Infinity }).slice(0, 300))) } : {};
      const suppressed = last && last.held > 0 ? { suppressed: last.held } : {};
      logger[level]({ ...fields, ...extra, ...suppressed }, `opentelemetry: ${msg}`);
    };
  return { error: write("error"), warn: write("warn"), info: write("info"), debug: write("debug"), verbose: write("trace") };
}
