import { z } from "zod";
import { compileSchema, parameterJsonSchema, schemaCompiler } from "../plugins/catalog.js";
import type { Plugin, PluginContext } from "../plugins/types.js";
import { QUEUE_NAME_PATTERN, QUEUE_NAME_RULE } from "../field-rules.js";

/** A task type's name: what CreateTask's `type` says. Lower case, digits, `_`, `.`, `-`; at most 100 characters. */
const NAME = /^[a-z][a-z0-9_.-]{0,99}$/;

/** Defaults a task of the type gets when its CreateTask request leaves them out. */
export interface PluginDefaultsInput {
  /** Time limit of one attempt, in milliseconds (default 60 000): the signal fires when it runs out. */
  timeoutMs?: number;
  /** Attempts before the task fails (default 3); a PermanentTaskError ends it at once. */
  maxAttempts?: number;
  /** The queue tasks go to when the request names none (registered and listed with the type). */
  queue?: string;
}

/** What definePlugin takes. */
export interface PluginDefinition<S extends z.ZodObject> {
  name: string;
  /** One line: shown by ListTaskTypes, `task-cli types` and the dashboard. */
  description: string;
  /** A zod object schema; turned into the JSON Schema the server validates CreateTask against. */
  parameters: S;
  defaults?: PluginDefaultsInput;
  /**
   * Runs one attempt. `params` are the task's parameters parsed by the schema (defaults applied).
   * Resolve with a small JSON object (stored as the task's result); throw to fail the attempt
   * (retried with backoff while attempts remain), or throw PermanentTaskError to fail the task now.
   * Stop promptly when `ctx.signal` fires (timeout, cancel, worker shutdown).
   */
  run(params: z.output<S>, ctx: TaskContext): Promise<Record<string, unknown> | void>;
}

/**
 * What a plugin's `run` gets for one attempt: the context the built-in types get, plus its files:
 * `ctx.input("data")` streams an input file, `ctx.artifact("report.csv", stream)` keeps an output
 * (stored when run resolves, before the success is recorded; see PluginContext.files for the rest).
 */
export type TaskContext = PluginContext & {
  /** An input file's bytes, streamed from storage. */
  input(name: string): AsyncIterable<Buffer>;
  /** Keeps a file as an output of this attempt (a failed attempt keeps none). */
  artifact(name: string, data: AsyncIterable<Uint8Array | string> | Uint8Array | string): Promise<void>;
};

/** The context with its file methods; outside a worker (no ctx.files), they throw saying so. */
function withFiles(ctx: PluginContext): TaskContext {
  const files = () => {
    if (!ctx.files) throw new Error("task files need a worker: this plugin was called without one (ctx.files is unset)");
    return ctx.files;
  };
  return { ...ctx, input: (name) => files().open(name), artifact: (name, data) => files().artifact(name, data) };
}

/** A task type with its code, as startWorker runs it and createTaskClient types requests by it. */
export interface TaskPlugin<S extends z.ZodObject = z.ZodObject> extends Plugin<S> {
  readonly defaults: { timeoutMs: number; maxAttempts: number; queue?: string };
}

const DEFAULT_TIMEOUT_MS = 60_000;
const DEFAULT_MAX_ATTEMPTS = 3;
const MAX_TIMEOUT_MS = 24 * 3600 * 1000;

/**
 * Declares a task type. Checks the definition at once (name, schema representable as JSON Schema,
 * defaults in range), so a mistake fails when the module loads rather than at the first task.
 */
export function definePlugin<S extends z.ZodObject>(definition: PluginDefinition<S>): TaskPlugin<S> {
  const { name, description, parameters, defaults = {}, run } = definition;
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new TypeError(`definePlugin: name ${JSON.stringify(name)} must match ${NAME} (e.g. "http_request")`);
  }
  if (typeof run !== "function") throw new TypeError(`definePlugin(${name}): run must be a function`);
  if (!parameters || typeof (parameters as { safeParse?: unknown }).safeParse !== "function") {
    throw new TypeError(`definePlugin(${name}): parameters must be a zod object schema`);
  }
  let schema: Record<string, unknown>;
  try {
    schema = parameterJsonSchema({ parameters });
  } catch (err) {
    throw new TypeError(`definePlugin(${name}): parameters cannot be expressed as JSON Schema: ${(err as Error).message}`);
  }
  if (schema.type !== "object") throw new TypeError(`definePlugin(${name}): parameters must be an object schema (z.object)`);
  compileSchema(schemaCompiler(), schema, name);
  const timeoutMs = defaults.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxAttempts = defaults.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMEOUT_MS) {
    throw new RangeError(`definePlugin(${name}): defaults.timeoutMs must be an integer between 1 and ${MAX_TIMEOUT_MS}`);
  }
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 100) {
    throw new RangeError(`definePlugin(${name}): defaults.maxAttempts must be an integer between 1 and 100`);
  }
  if (defaults.queue !== undefined && !QUEUE_NAME_PATTERN.test(defaults.queue)) {
    throw new RangeError(`definePlugin(${name}): defaults.queue must be a queue name: ${QUEUE_NAME_RULE}`);
  }
  return Object.freeze({
    name,
    description: description ?? "",
    parameters,
    defaults: Object.freeze({ timeoutMs, maxAttempts, ...(defaults.queue === undefined ? {} : { queue: defaults.queue }) }),
    // The result is optional for the plugin's author; the worker stores {} for none.
    run: async (params: z.output<S>, ctx: PluginContext) => (await run(params, withFiles(ctx))) ?? {},
  });
}
