import { readFile } from "node:fs/promises";
import { parseDuration } from "../duration.js";
import { parseLabels } from "../labels.js";
import { UsageError } from "./io.js";

/** Commander's accumulator for a repeatable option. */
export const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** A duration flag ("500ms", "30s", "5m", "1h30m", "2d"; src/duration.ts) in ms; anything else is a UsageError naming the flag. */
export function parseDurationFlag(value: string, flag: string): number {
  const ms = parseDuration(value);
  if (ms === undefined) throw new UsageError(`${flag}: "${value}" is not a duration (e.g. 500ms, 30s, 5m, 1h30m)`);
  return ms;
}

/** Parses an integer flag strictly within bounds. */
export function parseInteger(value: string, flag: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^-?\d+$/.test(value) || n < min || n > max) throw new UsageError(`${flag}: "${value}" must be an integer from ${min} to ${max}`);
  return n;
}

/** Parses a positive task id. */
export function parseTaskId(value: string): bigint {
  if (!/^[1-9]\d{0,18}$/.test(value)) throw new UsageError(`--id: "${value}" is not a task id`);
  return BigInt(value);
}

/** Parses an ISO-8601 time for --run-at. */
export function parseTime(value: string, flag: string): Date {
  const date = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(date.getTime())) {
    throw new UsageError(`${flag}: "${value}" is not an ISO-8601 time (e.g. 2030-01-02T15:04:05Z)`);
  }
  return date;
}

/**
 * Turns repeated -p key=value into an object. Values that read as JSON numbers, booleans, null,
 * arrays or objects become those; anything else stays a string (quote it as JSON to force a string).
 */
export function parseKeyValues(pairs: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new UsageError(`-p: "${pair}" is not key=value`);
    const key = pair.slice(0, eq);
    const raw = pair.slice(eq + 1);
    out[key] = /^(-?\d+(\.\d+)?|true|false|null|\[.*\]|\{.*\}|".*")$/s.test(raw) ? tryJson(raw) : raw;
  }
  return out;
}

function tryJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/** Parses --params-json: inline JSON, or @file to read it from a file. */
export function parseJsonObject(text: string, flag: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${flag}: not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) throw new UsageError(`${flag}: must be a JSON object`);
  return value as Record<string, unknown>;
}

/**
 * A task's parameters from the command line: `--params-json` (JSON text, or `@file`) first, then each
 * `-p key=value` on top. Shared by `task create` and `schedule create`.
 */
export async function parseParameterFlags(flags: { paramsJson?: string; param?: string[] }): Promise<Record<string, unknown>> {
  let parameters: Record<string, unknown> = {};
  if (flags.paramsJson !== undefined) {
    const text = flags.paramsJson.startsWith("@") ? await readFile(flags.paramsJson.slice(1), "utf8") : flags.paramsJson;
    parameters = parseJsonObject(text, "--params-json");
  }
  return { ...parameters, ...parseKeyValues(flags.param ?? []) };
}

/** A labels flag ("k=v,k=v"), checked here so a typo is a usage error before anything is sent; undefined when not given. */
export function labelsFlag(value: string | undefined, flag: string): Record<string, string> | undefined {
  if (value === undefined) return undefined;
  try {
    return parseLabels(value);
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}
