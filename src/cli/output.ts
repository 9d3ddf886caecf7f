import { toJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import Table from "cli-table3";
import { createRequire } from "node:module";
import { TaskStatus, type TaskProgress } from "../gen/task/v1/task_pb.js";
import { formatDuration } from "../duration.js";
import type { CliIO } from "./io.js";
import { DEFAULT_COLUMNS, UsageError } from "./io.js";

export const outputFormats = ["table", "json", "yaml"] as const;
export type OutputFormat = (typeof outputFormats)[number];


/**
 * The yaml package, loaded on first use: most commands never print YAML, and loading it costs a
 * noticeable part of a CLI call's start-up (see README, Performance).
 */
export function loadYaml(): typeof import("yaml") {
  return createRequire(import.meta.url)("yaml") as typeof import("yaml");
}
/** Parses -o/--output, rejecting anything else (never silently falling back to a default). */
export function parseOutputFormat(value: string): OutputFormat {
  if ((outputFormats as readonly string[]).includes(value)) return value as OutputFormat;
  throw new UsageError(`--output: "${value}" is not one of ${outputFormats.join(", ")}`);
}

/**
 * Prints a response message: JSON is the message's protobuf JSON (stable for scripts, zero values
 * included), YAML the same data, and table whatever the command lays out for people, fitted to
 * the terminal's width (DEFAULT_COLUMNS when stdout is not a terminal).
 */
export function printMessage<Desc extends DescMessage>(
  io: CliIO,
  format: OutputFormat,
  schema: Desc,
  message: MessageShape<Desc>,
  table: (message: MessageShape<Desc>, width: number) => string,
): void {
  if (format === "table") {
    io.stdout.write(`${table(message, tableWidth(io))}\n`);
    return;
  }
  const json = toJson(schema, message, { alwaysEmitImplicit: true });
  io.stdout.write(format === "json" ? `${JSON.stringify(json, null, 2)}\n` : loadYaml().stringify(json));
}

/** The width tables may use: the terminal's, or DEFAULT_COLUMNS when there is none. */
export function tableWidth(io: CliIO): number {
  return io.columns && io.columns > 0 ? io.columns : DEFAULT_COLUMNS;
}

/** A borderless table (columns separated by two spaces). */
export function makeTable(head: string[]): Table.Table {
  return new Table({
    head,
    style: { head: [], border: [], compact: true },
    chars: { mid: "", "left-mid": "", "mid-mid": "", "right-mid": "", top: "", "top-mid": "", "top-left": "", "top-right": "", bottom: "", "bottom-mid": "", "bottom-left": "", "bottom-right": "", left: "", right: "", middle: "  " },
  });
}

/** Key/value rows for one object. */
export function keyValueTable(rows: [string, string][]): string {
  const table = makeTable([]);
  for (const row of rows) table.push(row);
  return table.toString();
}

/** Shortens text to `max` characters with an ellipsis, on one line. */
export function truncate(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ");
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`;
}

/** The enum name without its prefix: TASK_STATUS_RUNNING -> RUNNING. */
export function statusName(status: TaskStatus): string {
  return TaskStatus[status] ?? String(status);
}

/** "12s ago", "3m ago", "in 5m", "2d ago"; "-" when unset. */
export function humanTime(ts: Timestamp | undefined, now = Date.now()): string {
  if (!ts) return "-";
  const diff = now - timestampDate(ts).getTime();
  const abs = Math.abs(diff);
  const units: [number, string][] = [
    [86_400_000, "d"],
    [3_600_000, "h"],
    [60_000, "m"],
    [1_000, "s"],
  ];
  const [size, unit] = units.find(([size]) => abs >= size) ?? [1_000, "s"];
  const amount = Math.floor(abs / size);
  return diff >= 0 ? `${amount}${unit} ago` : `in ${amount}${unit}`;
}

/** An ISO timestamp, or "-". */
export function isoTime(ts: Timestamp | undefined): string {
  return ts ? timestampDate(ts).toISOString() : "-";
}

/** "42%", "42% 4,200 of 10,000 rows", with the rate and time left when the server has a trend. */
export function progressText(p: TaskProgress): string {
  const parts = [`${Math.floor(p.fraction * 100)}%`];
  if (p.message) parts.push(p.message);
  if (p.estimatedRemaining) {
    const left = Number(p.estimatedRemaining.seconds) * 1000 + Math.round(p.estimatedRemaining.nanos / 1e6);
    parts.push(`(${(p.ratePerSecond * 100).toFixed(p.ratePerSecond >= 0.1 ? 0 : 2)}%/s, ~${formatDuration(left)} left)`);
  }
  return parts.join(" ");
}
