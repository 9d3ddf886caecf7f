// OpenTelemetry's diagnostics go through the project's logger while tracing is on: an exporter
// pointed at a closed port logs its failure (not silently dropped), and a failure that repeats is
// held back for a window (not one line per export).
import { Writable } from "node:stream";
import { DiagLogLevel } from "@opentelemetry/api";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { startTracing, tracerOf } from "../src/tracing.js";
import { diagLevelOf, diagLoggerOf } from "../src/tracing-diag.js";
import { waitFor } from "./helpers/wait.js";
import { closedPort } from "./helpers/ports.js";

interface Line {
  level: number;
  msg: string;
  component?: string;
  code?: string;
  suppressed?: number;
}

/** A pino logger at `level` whose lines are kept, parsed. */
function capturedLogger(level: string) {
  const lines: Line[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const text of chunk.toString("utf8").split("\n")) if (text) lines.push(JSON.parse(text) as Line);
      done();
    },
  });
  return { logger: pino({ level }, sink), lines };
}


describe("OpenTelemetry's diagnostics", () => {
  it("log an export to a closed port through the project's logger", async () => {
    const { logger, lines } = capturedLogger("info");
    const config = loadConfig({ otelEndpoint: `http://127.0.0.1:${await closedPort()}` }, {});
    const tracing = await startTracing(config, logger);
    try {
      tracerOf().startSpan("lost").end();
      // The exporter retries a refused connection until its timeout (10 s), then gives up.
      await waitFor(() => lines.some((l) => l.level === 50 && l.component === "otel"), "the export failure in the log", 30_000);
      const failure = lines.find((l) => l.level === 50 && l.component === "otel")!;
      expect(failure.msg).toMatch(/^opentelemetry: connect ECONNREFUSED 127\.0\.0\.1:\d+$/);
      expect(failure.code).toBe("ECONNREFUSED");
    } finally {
      await tracing.stop();
    }
  }, 40_000);

  it("log a repeated message once a window, with how many were held back", () => {
    const { logger, lines } = capturedLogger("info");
    let now = 0;
    const diag = diagLoggerOf(logger, 60_000, () => now);
    const refused = (port: number) => JSON.stringify({ message: `connect ECONNREFUSED 127.0.0.1:${port}`, code: "ECONNREFUSED", stack: "Error: ..." });
    diag.error(refused(4318));
    for (let i = 0; i < 30; i++) {
      now += 1_000;
      diag.error(refused(4318 + i));
    }
    diag.warn("Dropped 5 spans because maxQueueSize reached");
    expect(lines.map((l) => [l.level, l.msg, l.suppressed])).toEqual([
      [50, "opentelemetry: connect ECONNREFUSED 127.0.0.1:4318", undefined],
      [40, "opentelemetry: Dropped 5 spans because maxQueueSize reached", undefined],
    ]);
    now += 60_000;
    diag.error(refused(1));
    expect(lines.at(-1)).toMatchObject({ level: 50, msg: "opentelemetry: connect ECONNREFUSED 127.0.0.1:1", code: "ECONNREFUSED", suppressed: 30 });
  });

  it("pass what the configured log level passes", () => {
    expect(diagLevelOf("info")).toBe(DiagLogLevel.INFO);
    expect(diagLevelOf("warn")).toBe(DiagLogLevel.WARN);
    expect(diagLevelOf("debug")).toBe(DiagLogLevel.DEBUG);
    expect(diagLevelOf("trace")).toBe(DiagLogLevel.VERBOSE);
    expect(diagLevelOf("error")).toBe(DiagLogLevel.ERROR);
    expect(diagLevelOf("silent")).toBe(DiagLogLevel.NONE);
  });
});
