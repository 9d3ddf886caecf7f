/**
 * Traces: a task's W3C traceparent from its create (or schedule tick), stored with the task, and
 * the worker's spans for each attempt, linked to it (OpenTelemetry messaging conventions: an async
 * consumer links to the producer's context rather than continuing its trace).
 *
 * Off unless the standard OTEL_* variables turn it on (src/config.ts reads them). Off, no SDK
 * module is loaded: spans come from @opentelemetry/api's no-op tracer. On, startTracing imports the
 * SDK and an OTLP/HTTP exporter (protobuf or JSON) and registers a global tracer provider.
 */
import { context, diag, INVALID_SPAN_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Link, type Span, type SpanContext } from "@opentelemetry/api";
import type { Config } from "./config.js";
import { errorMessage } from "./errors.js";
import type { Logger } from "./logger.js";
import { diagLevelOf, diagLoggerOf } from "./tracing-diag.js";

/**
 * Messaging attributes (semantic conventions, "development" status, so copied here rather than
 * imported from @opentelemetry/semantic-conventions/incubating; test/tracing.test.ts checks they match).
 */
export const ATTR_MESSAGING_SYSTEM = "messaging.system";
export const ATTR_MESSAGING_OPERATION_TYPE = "messaging.operation.type";
export const ATTR_MESSAGING_DESTINATION_NAME = "messaging.destination.name";
export const ATTR_MESSAGING_MESSAGE_ID = "messaging.message.id";
export const ATTR_MESSAGING_BATCH_MESSAGE_COUNT = "messaging.batch.message_count";
/** Our messaging.system: the tasks are the messages, the queues their destinations. */
export const MESSAGING_SYSTEM = "task-service";

/** The settings tracing reads. */
export type TracingConfig = Pick<Config, "otelTracesExporter" | "otelEndpoint" | "otelTracesEndpoint" | "otelProtocol" | "otelServiceName">;

/** Whether the configuration turns tracing on: an OTLP endpoint or exporter named, and not `none`. */
export function tracingEnabled(config: TracingConfig): boolean {
  if (config.otelTracesExporter === "none") return false;
  return config.otelTracesExporter === "otlp" || config.otelEndpoint !== undefined || config.otelTracesEndpoint !== undefined;
}

/** Where spans are posted: the traces endpoint as given, or the base endpoint's /v1/traces. */
export function tracesUrl(config: TracingConfig): string {
  if (config.otelTracesEndpoint) return config.otelTracesEndpoint;
  return `${(config.otelEndpoint ?? "http://localhost:4318").replace(/\/+$/, "")}/v1/traces`;
}

const TRACER_NAME = "task-service";
let tracer = trace.getTracer(TRACER_NAME);
/** The registered provider and how many started services share it (tests start several in one process). */
let registered: { users: number; shutdown(): Promise<void>; flush(): Promise<void> } | undefined;

/** Whether spans are recorded and exported in this process. */
export function tracingActive(): boolean {
  return registered !== undefined;
}

/** The tracer spans are made with (the API's no-op one while tracing is off). */
export function tracerOf() {
  return tracer;
}

/**
 * Turns tracing on for this process if the configuration says so (see the module comment).
 * Returns what stops it: the last stop flushes the spans still buffered and shuts the exporter down.
 */
export async function startTracing(config: TracingConfig, logger: Logger): Promise<{ stop(): Promise<void>; flush(): Promise<void> }> {
  if (!tracingEnabled(config)) return { stop: async () => undefined, flush: async () => undefined };
  if (!registered) {
    // The SDK's own failures (a collector that is down) go to our log, at our level, not nowhere.
    diag.setLogger(diagLoggerOf(logger.child({ component: "otel" })), { logLevel: diagLevelOf(logger.level), suppressOverrideMessage: true });
    // Imported here, only when tracing is on: a process without OTEL_* settings never loads the SDK.
    const [{ BasicTracerProvider, BatchSpanProcessor }, { resourceFromAttributes }, { ATTR_SERVICE_NAME }] = await Promise.all([
      import("@opentelemetry/sdk-trace-base"),
      import("@opentelemetry/resources"),
      import("@opentelemetry/semantic-conventions"),
    ]);
    const url = tracesUrl(config);
    const exporter =
      config.otelProtocol === "http/json"
        ? new (await import("@opentelemetry/exporter-trace-otlp-http")).OTLPTraceExporter({ url })
        : new (await import("@opentelemetry/exporter-trace-otlp-proto")).OTLPTraceExporter({ url });
    const provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: config.otelServiceName }),
      spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: 1_000 })],
    });
    trace.setGlobalTracerProvider(provider);
    tracer = trace.getTracer(TRACER_NAME);
    registered = { users: 0, shutdown: () => provider.shutdown(), flush: () => provider.forceFlush() };
    logger.info({ url, protocol: config.otelProtocol, serviceName: config.otelServiceName }, "exporting traces over OTLP/HTTP");
  }
  const mine = registered;
  mine.users++;
  let stopped = false;
  return {
    flush: () => mine.flush(),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      if (--mine.users > 0) return;
      if (registered === mine) registered = undefined;
      trace.disable();
      tracer = trace.getTracer(TRACER_NAME);
      await mine.shutdown().catch((err: unknown) => logger.warn({ err: errorMessage(err) }, "could not export the last spans"));
      diag.disable();
    },
  };
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;

/** A W3C traceparent's span context; undefined when it is malformed (or all zeros), as the spec says to ignore it. */
export function parseTraceparent(text: string | null | undefined): SpanContext | undefined {
  const m = TRACEPARENT.exec(text?.trim() ?? "");
  if (!m || m[1] === "ff" || (m[1] === "00" && text!.trim().length !== 55)) return undefined;
  const [, , traceId, spanId, flags] = m as unknown as [string, string, string, string, string];
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return { traceId, spanId, traceFlags: parseInt(flags, 16) & TraceFlags.SAMPLED, isRemote: true };
}

/** A span context as a version-00 traceparent; undefined for the no-op tracer's invalid context. */
export function formatTraceparent(sc: SpanContext): string | undefined {
  if (!trace.isSpanContextValid(sc)) return undefined;
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & TraceFlags.SAMPLED).toString(16).padStart(2, "0")}`;
}

/**
 * The span of a CreateTask or CreateTasks call: a child of the request's `traceparent` header (or a
 * new trace). Its traceparent is what the tasks store; tracing off, that is the header's, normalized
 * (or none), so a traced client's tasks still carry its trace to workers that trace.
 */
export function startCreateSpan(method: "CreateTask" | "CreateTasks", header: string | null | undefined, count: number): { traceparent: string | null; end(err?: unknown): void } {
  const parent = parseTraceparent(header);
  if (!tracingActive()) return { traceparent: parent ? formatTraceparent(parent)! : null, end: () => undefined };
  const parentCtx = parent ? trace.setSpanContext(context.active(), parent) : context.active();
  const span = tracer.startSpan(
    `task.v1.TaskService/${method}`,
    { kind: SpanKind.SERVER, attributes: { "rpc.system": "connect_rpc", "rpc.service": "task.v1.TaskService", "rpc.method": method, [ATTR_MESSAGING_BATCH_MESSAGE_COUNT]: count } },
    parentCtx,
  );
  return { traceparent: formatTraceparent(span.spanContext()) ?? null, end: (err) => endSpan(span, err) };
}

/** A schedule's tick starts a trace of its own (tracing off: none). */
export function tickTraceparent(scheduleName: string, scheduledAt: Date): string | null {
  if (!tracingActive()) return null;
  const span = tracer.startSpan(`schedule ${scheduleName}`, { kind: SpanKind.PRODUCER, root: true, attributes: { "task.schedule": scheduleName, "task.scheduled_at": scheduledAt.toISOString() } });
  span.end();
  return formatTraceparent(span.spanContext()) ?? null;
}

/** Ends a span, with an error status when `err` is given. */
export function endSpan(span: Span, err?: unknown): void {
  if (err !== undefined) {
    span.recordException(err instanceof Error ? err : new Error(errorMessage(err)));
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
  }
  span.end();
}

/** The claim span each claimed task's attempt links to (kept beside the row, not in it). */
const claimedBy = new WeakMap<object, SpanContext>();

/** Wraps a worker's claim in one `claim` span per batch; each claimed task's `process` span links to it. */
export function tracedClaim<T extends object>(queues: readonly string[], claim: (limit: number) => Promise<T[]>): (limit: number) => Promise<T[]> {
  return async (limit) => {
    if (!tracingActive()) return claim(limit);
    const span = tracer.startSpan("claim", { kind: SpanKind.CONSUMER, root: true, attributes: { [ATTR_MESSAGING_SYSTEM]: MESSAGING_SYSTEM, [ATTR_MESSAGING_OPERATION_TYPE]: "receive", "task.queues": [...queues] } });
    try {
      const rows = await claim(limit);
      span.setAttribute(ATTR_MESSAGING_BATCH_MESSAGE_COUNT, rows.length);
      for (const row of rows) claimedBy.set(row, span.spanContext());
      endSpan(span);
      return rows;
    } catch (err) {
      endSpan(span, err);
      throw err;
    }
  };
}

/** The span of everything while tracing is off (its methods do nothing). */
const NOOP_SPAN = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/** One attempt's spans: `process <queue>` and its children. */
export interface AttemptTrace {
  /** The span of the attempt; ended by end(). */
  span: Span;
  /** Starts a child of the attempt span. */
  child(name: string, attributes?: Record<string, string | number>): Span;
  /** The traceparent a child span hands to the plugin (TRACEPARENT, application_name). */
  traceparentOf(span: Span): string | undefined;
  end(err?: unknown): void;
}

/**
 * The span of one attempt, `process <queue>` (a consumer span), linked to the task's stored
 * traceparent (its create) and to the claim that took it. Tracing off: the no-op span, and the
 * plugin is handed the stored traceparent, so a user's code still joins the create's trace.
 */
export function startAttemptTrace(task: { id: string; queue: string; type: string; attempts: number; traceparent: string | null }): AttemptTrace {
  // Off: one small object per attempt, no span, context or link made.
  if (!tracingActive()) return { span: NOOP_SPAN, child: () => NOOP_SPAN, traceparentOf: () => task.traceparent ?? undefined, end: () => undefined };
  const links: Link[] = [];
  const created = parseTraceparent(task.traceparent);
  if (created) links.push({ context: created, attributes: { "task.link": "create" } });
  const claim = claimedBy.get(task);
  if (claim) links.push({ context: claim, attributes: { "task.link": "claim" } });
  const span = tracer.startSpan(
    `process ${task.queue}`,
    {
      kind: SpanKind.CONSUMER,
      root: true,
      links,
      attributes: {
        [ATTR_MESSAGING_SYSTEM]: MESSAGING_SYSTEM,
        [ATTR_MESSAGING_OPERATION_TYPE]: "process",
        [ATTR_MESSAGING_DESTINATION_NAME]: task.queue,
        [ATTR_MESSAGING_MESSAGE_ID]: task.id,
        "task.type": task.type,
        "task.attempt": task.attempts,
      },
    },
    context.active(),
  );
  const parent = trace.setSpan(context.active(), span);
  return {
    span,
    child: (name, attributes) => tracer.startSpan(name, { kind: SpanKind.INTERNAL, attributes }, parent),
    traceparentOf: (child) => formatTraceparent(child.spanContext()) ?? task.traceparent ?? undefined,
    end: (err) => endSpan(span, err),
  };
}
