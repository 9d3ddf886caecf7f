import { create } from "@bufbuild/protobuf";
import { z } from "zod";
import { durationFromMs } from "../api/convert.js";
import { CatchUpPolicy, OverlapPolicy, ScheduleSpecSchema, type ScheduleSpec } from "../gen/task/v1/schedule_pb.js";
import { UsageError } from "./io.js";
import { loadYaml } from "./output.js";
import { parseDurationFlag } from "./parse.js";

export const catchUpPolicies: Record<string, CatchUpPolicy> = { skip: CatchUpPolicy.SKIP, latest: CatchUpPolicy.LATEST, backfill: CatchUpPolicy.BACKFILL };
export const overlapPolicies: Record<string, OverlapPolicy> = { allow: OverlapPolicy.ALLOW, skip: OverlapPolicy.SKIP, cancel_previous: OverlapPolicy.CANCEL_PREVIOUS };

/** One schedule as written in a schedules file (snake_case keys, durations as text). */
const entrySchema = z.strictObject({
  name: z.string().min(1),
  cron: z.string().min(1),
  time_zone: z.string().optional(),
  type: z.string().min(1),
  parameters: z.record(z.string(), z.unknown()).optional(),
  priority: z.number().int().optional(),
  max_attempts: z.number().int().optional(),
  timeout: z.string().optional(),
  catch_up: z.enum(Object.keys(catchUpPolicies) as [string, ...string[]]).optional(),
  backfill_limit: z.number().int().optional(),
  overlap: z.enum(Object.keys(overlapPolicies) as [string, ...string[]]).optional(),
  paused: z.boolean().optional(),
  // The labels each tick's task requires, as a map (region: eu); checked by the server.
  labels: z.record(z.string(), z.string()).optional(),
});

const fileSchema = z.union([z.strictObject({ schedules: z.array(entrySchema) }), z.array(entrySchema)]);

/** A schedule spec from the same values as `schedule create` flags or a file entry take. */
export interface SpecInput {
  name: string;
  cron: string;
  timeZone?: string;
  type: string;
  parameters?: Record<string, unknown>;
  priority?: number;
  maxAttempts?: number;
  /** Milliseconds. */
  timeoutMs?: number;
  catchUp?: string;
  backfillLimit?: number;
  overlap?: string;
  paused?: boolean;
  labels?: Record<string, string>;
}

/** Builds the API's ScheduleSpec; policy names are checked here, everything else by the server. */
export function buildSpec(input: SpecInput, where: string): ScheduleSpec {
  const catchUp = input.catchUp === undefined ? CatchUpPolicy.UNSPECIFIED : catchUpPolicies[input.catchUp];
  if (catchUp === undefined) throw new UsageError(`${where}catch-up: "${input.catchUp}" is not one of ${Object.keys(catchUpPolicies).join(", ")}`);
  const overlap = input.overlap === undefined ? OverlapPolicy.UNSPECIFIED : overlapPolicies[input.overlap];
  if (overlap === undefined) throw new UsageError(`${where}overlap: "${input.overlap}" is not one of ${Object.keys(overlapPolicies).join(", ")}`);
  return create(ScheduleSpecSchema, {
    name: input.name,
    cron: input.cron,
    timeZone: input.timeZone ?? "UTC",
    task: {
      type: input.type,
      parameters: (input.parameters ?? {}) as never,
      priority: input.priority ?? 0,
      maxAttempts: input.maxAttempts ?? 0,
      timeout: input.timeoutMs === undefined ? undefined : durationFromMs(input.timeoutMs),
      labels: input.labels ?? {},
    },
    paused: input.paused ?? false,
    catchUp,
    backfillLimit: input.backfillLimit ?? 0,
    overlap,
  });
}

/**
 * Reads a schedules file: YAML (or JSON) holding `schedules: [...]` or a bare list. Unknown keys
 * and repeated names are errors that name the entry, so a typo never silently drops a setting.
 */
export function parseScheduleFile(text: string, file: string): ScheduleSpec[] {
  let data: unknown;
  try {
    data = loadYaml().parse(text);
  } catch (err) {
    throw new UsageError(`${file}: not valid YAML (${err instanceof Error ? err.message : String(err)})`);
  }
  const parsed = fileSchema.safeParse(data ?? []);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = issue.path.length > 0 ? issue.path.map(String).join(".") : "(top level)";
    throw new UsageError(`${file}: ${path}: ${issue.message} (expected \`schedules:\` with a list of schedules)`);
  }
  const entries = Array.isArray(parsed.data) ? parsed.data : parsed.data.schedules;
  const seen = new Set<string>();
  return entries.map((e, i) => {
    const where = `${file}: schedules[${i}] (${e.name}): `;
    if (seen.has(e.name)) throw new UsageError(`${where}name: "${e.name}" appears twice`);
    seen.add(e.name);
    return buildSpec(
      {
        name: e.name,
        cron: e.cron,
        timeZone: e.time_zone,
        type: e.type,
        parameters: e.parameters,
        priority: e.priority,
        maxAttempts: e.max_attempts,
        timeoutMs: e.timeout === undefined ? undefined : parseDurationFlag(e.timeout, `${where}timeout`),
        catchUp: e.catch_up,
        backfillLimit: e.backfill_limit,
        overlap: e.overlap,
        paused: e.paused,
        labels: e.labels,
      },
      where,
    );
  });
}
