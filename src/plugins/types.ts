import type { z } from "zod";
import type { Logger } from "../logger.js";

/** Where a plugin's output lines go (stored in task_logs, batched and capped). */
export interface LogSink {
  /**
   * Stores one line. A sink may return false when storing has fallen behind: a caller that can
   * wait (a pipe reader) should then wait for drain() before writing more. Lines written anyway
   * are still kept.
   */
  write(stream: "stdout" | "stderr" | "system", line: string): boolean | void;
  /** Resolves when the sink can take more lines (after write returned false). */
  drain?(): Promise<void>;
}

/**
 * A sink that also takes raw output past its head (the worker's TaskLogSink): once tailOnly() is
 * true, a reader may hand whole chunks of bytes with their newline count instead of splitting
 * them into lines, since only the last lines will be kept.
 */
export interface CaptureSink extends LogSink {
  write(stream: "stdout" | "stderr" | "system", line: string): boolean;
  drain(): Promise<void>;
  tailOnly(): boolean;
  raw(stream: "stdout" | "stderr" | "system", chunk: Buffer, newlines: number): void;
}

/** Whether a sink takes raw output past its head. */
export function isCaptureSink(sink: LogSink): sink is CaptureSink {
  const s = sink as Partial<CaptureSink>;
  return typeof s.tailOnly === "function" && typeof s.raw === "function" && typeof s.drain === "function";
}

/** What a plugin gets for one attempt. */
export interface PluginContext {
  /** Fires on timeout, cancellation or worker shutdown; plugins must stop promptly. */
  signal: AbortSignal;
  taskId: string;
  /** 1-based attempt number, so plugins can be idempotent where the outside world allows. */
  attempt: number;
  logger: Logger;
  output: LogSink;
  /** The attempt's lease, when a worker runs it: plugins that start processes tie them to it. */
  lease?: AttemptLease;
  /** Pause and resume requests for this attempt (only plugins that declare `pausable` see any). */
  pause?: PauseSignal;
  /**
   * The W3C traceparent of the attempt's `run <type>` span (src/tracing.ts), or the create's when
   * tracing is off: what the plugin hands on so the work it starts joins the trace.
   */
  traceparent?: string;
  /**
   * Reports how far the attempt has come: `fraction` from 0 to 1, and what it means ("4,200 of
   * 10,000 rows"). Call it as often as is convenient: the worker stores about one report a second
   * per task (the last one always). Absent when nothing stores progress (a plugin called directly).
   */
  progress?: (fraction: number, message?: string) => void;
  /**
   * The task's input files and this attempt's outputs (src/worker/attempt-files.ts); absent when a
   * plugin is called outside a worker.
   */
  files?: TaskFiles;
}

/** A task's input files and the outputs its attempt keeps. */
export interface TaskFiles {
  /** The inputs the task was created with (names and sizes). */
  inputs(): Promise<{ name: string; size: number }[]>;
  /** An input's bytes, streamed from storage (an Error naming the inputs when there is no such input). */
  open(name: string): AsyncIterable<Buffer>;
  /**
   * Keeps a file as an output of this attempt: written to the attempt's output directory now and
   * stored when the plugin has returned, before the success is recorded (a failed attempt keeps none).
   */
  artifact(name: string, data: AsyncIterable<Uint8Array | string> | Uint8Array | string): Promise<void>;
  /** A directory holding every input as a file (written on first call): a shell task's $TASK_INPUT_DIR. */
  inputDir(): Promise<string>;
  /** The directory whose files become the attempt's outputs: a shell task's $TASK_OUTPUT_DIR. */
  outputDir(): Promise<string>;
}

/**
 * Whether an operator has paused the attempt (PauseTask). A pausable plugin stops its work while
 * `paused` (the shell plugin SIGSTOPs its process group) and continues it when resumed; the worker
 * stops the attempt's timeout meanwhile.
 */
export interface PauseSignal {
  readonly paused: boolean;
  /** Calls `listener` at each change; returns the function that unsubscribes it. */
  onChange(listener: (paused: boolean) => void): () => void;
}

/**
 * The lease a worker holds on a running attempt. The worker renews it with every heartbeat that
 * the database acknowledged; if renewals stop for `watchdogMs` (the worker is stopped or cut off)
 * the reconciler may soon retry the task elsewhere, so whatever the attempt runs outside the
 * worker's process must stop by then.
 */
export interface AttemptLease {
  watchdogMs: number;
  /** Calls `listener` at every renewal; returns the function that unsubscribes it. */
  onRenew(listener: () => void): () => void;
}

/** Defaults a plugin applies when the request leaves them out. */
export interface PluginDefaults {
  timeoutMs: number;
  maxAttempts: number;
  /** The queue a task goes to when its request names none (default: `default`). */
  queue?: string;
}

/**
 * A task type as the control plane knows it: its name, what it does, the schema its parameters must
 * satisfy (checked when a task is created and again before it runs) and defaults.
 */
export interface TaskType<S extends z.ZodType = z.ZodType> {
  name: string;
  description: string;
  parameters: S;
  defaults: PluginDefaults;
  /** Why the type is unavailable on this deployment, or undefined when it is enabled. */
  disabledReason?: string;
  /** The plugin can pause a running attempt (see PauseSignal); others can only be paused while waiting. */
  pausable?: boolean;
}

/** A task type plus the code that runs one attempt of it (the data plane). */
export interface Plugin<S extends z.ZodType = z.ZodType> extends TaskType<S> {
  /** Runs one attempt; resolves to a small JSON summary stored as the task's result. */
  run(params: z.output<S>, ctx: PluginContext): Promise<Record<string, unknown>>;
}

/** What create-time validation needs to know about a type once it is resolved. */
export interface ResolvedTaskType {
  name: string;
  defaults: PluginDefaults;
}

/**
 * Resolves task types by name and validates parameters for them: the PluginRegistry (the types a
 * process has code for) and the TaskTypeCatalog (the types registered in PostgreSQL) both are one.
 */
export interface TaskTypeResolver<T extends ResolvedTaskType = ResolvedTaskType> {
  /** The type, or InvalidArgumentError naming `field` (TaskTypeDisabledError when turned off here). */
  resolve(type: string, field?: string): T;
  /** The parameters, valid for the type, with its defaults applied; violations named under `prefix`. */
  parse(type: T, parameters: unknown, prefix?: string): Record<string, unknown>;
}
