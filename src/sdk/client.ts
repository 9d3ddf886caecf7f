import { setTimeout as sleep } from "node:timers/promises";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { z } from "zod";
import { ScheduleService } from "../gen/task/v1/schedule_pb.js";
import { CreateTaskRequestSchema, TaskService, TaskStatus, type Task } from "../gen/task/v1/task_pb.js";
import { FINISHED_TASK_STATUSES } from "../finished-statuses.js";
import type { Readable } from "node:stream";
import { downloadArtifact, uploadFile, type Upload } from "./files.js";
import { readCa } from "../tls.js";

/** What createTaskClient takes. */
export interface TaskClientOptions {
  /** The server's base URL, e.g. http://127.0.0.1:8080 (what `task-cli up` prints). */
  address: string;
  /** An API token (TASK_API_TOKENS), sent as a bearer token. */
  token?: string;
  /** The CA to trust for an https:// address: a PEM file's path or its text (default: Node's trust store). */
  ca?: string | Buffer;
}

/** A task type as the client needs it to type requests: a plugin from definePlugin has this shape. */
export interface TypedTaskType<S extends z.ZodType> {
  name: string;
  parameters: S;
}

/** The options of CreateTask besides type and parameters. */
export interface SubmitOptions {
  /** A label for people (default: the type's name). */
  name?: string;
  priority?: number;
  /** 0 or unset: the type's default. */
  maxAttempts?: number;
  /** Milliseconds; unset: the type's default. */
  timeoutMs?: number;
  runAt?: Date;
  idempotencyKey?: string;
  /** Milliseconds: end EXPIRED if not started this long after it is due (1 s to 366 d); unset: the queue's default, or never. */
  expireAfterMs?: number;
  /** The queue to wait in (default: the type's default queue, else "default"). */
  queue?: string;
  /** What the task competes for in its queue (a tenant, a host): its limit per key and fair turns apply (default: the queue's key template). */
  key?: string;
  /** Units of its rate limit the task takes when it starts (default 1; at most the limit's burst). */
  units?: number;
  /**
   * Debounce/dedupe (needs `key`, or the queue's key template): while the queue's unique task of
   * this key is unfinished ("unfinished"), or for `windowMs` after it was created, a submit answers
   * with that task instead of creating one (CreateTask's `created` says which; submit returns the task).
   */
  uniqueWhile?: "unfinished" | { windowMs: number };
  /** Run only on a worker or agent with these labels, e.g. `{ region: "eu" }` (its `labels`, `serve --labels`); default: any. */
  labels?: Record<string, string>;
  /** Input files: a name the task sees ($TASK_INPUT_DIR/<name>, ctx.files.open(name)) → an upload from `upload()`. */
  files?: Record<string, Upload | string>;
}

const terminal = FINISHED_TASK_STATUSES;

/**
 * The generated Connect client of TaskService (every RPC, typed by the proto), plus the schedules
 * client and helpers typed by a plugin's schema.
 */
export type TaskClient = Client<typeof TaskService> & {
  schedules: Client<typeof ScheduleService>;
  /**
   * CreateTask for a plugin's type, with `parameters` checked by TypeScript against its schema
   * (the server validates them again against the registered schema).
   */
  submit<S extends z.ZodType>(type: TypedTaskType<S>, parameters: z.input<S>, options?: SubmitOptions): Promise<Task>;
  /** Polls GetTask until the task is SUCCEEDED, FAILED or CANCELLED (or `timeoutMs` passes: then it throws). */
  waitFor(id: bigint, options?: { timeoutMs?: number; intervalMs?: number; signal?: AbortSignal }): Promise<Task>;
  /** Streams a file to the server (POST /uploads) for a task about to be created; pass the result in SubmitOptions.files or CreateTask's files. */
  upload(name: string, data: Readable | AsyncIterable<Uint8Array>, size?: number): Promise<Upload>;
  /** Streams an output file of a task (GET /tasks/{id}/artifacts/{name}), of the latest attempt that kept one unless `attempt` is given. */
  download(taskId: bigint, name: string, attempt?: number): Promise<Readable>;
};

/** Sends `Authorization: Bearer <token>` with every call (an API token, or a named token's secret). */
export function bearerToken(token: string): Interceptor {
  const header = `Bearer ${token}`;
  return (next) => (req) => {
    req.header.set("authorization", header);
    return next(req);
  };
}

/** A client of the task service's API (Connect protocol over HTTP/1.1, plain or TLS). */
export function createTaskClient(options: TaskClientOptions): TaskClient {
  let url: URL;
  try {
    url = new URL(options.address);
  } catch {
    throw new TypeError(`createTaskClient: address ${JSON.stringify(options.address)} is not a URL (expected e.g. http://127.0.0.1:8080)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new TypeError("createTaskClient: address must be http:// or https://");
  const interceptors: Interceptor[] = [];
  if (options.token) interceptors.push(bearerToken(options.token));
  // Read once here: a missing CA file fails createTaskClient, not the first call.
  const ca = url.protocol === "https:" ? readCa(options.ca) : undefined;
  const transport = createConnectTransport({ baseUrl: url.toString().replace(/\/$/, ""), httpVersion: "1.1", interceptors, ...(ca ? { nodeOptions: { ca } } : {}) });
  const fileOptions = { ...options, ca };
  const tasks = createClient(TaskService, transport);
  const schedules = createClient(ScheduleService, transport);
  return Object.assign(tasks, {
    schedules,
    async submit<S extends z.ZodType>(type: TypedTaskType<S>, parameters: z.input<S>, opts: SubmitOptions = {}): Promise<Task> {
      const request: MessageInitShape<typeof CreateTaskRequestSchema> = {
        name: opts.name ?? type.name,
        type: type.name,
        parameters: parameters as never,
        priority: opts.priority ?? 0,
        maxAttempts: opts.maxAttempts ?? 0,
        timeout: opts.timeoutMs === undefined ? undefined : durationFromMs(opts.timeoutMs),
        runAt: opts.runAt === undefined ? undefined : timestampFromDate(opts.runAt),
        idempotencyKey: opts.idempotencyKey ?? "",
        expireAfter: opts.expireAfterMs === undefined ? undefined : durationFromMs(opts.expireAfterMs),
        queue: opts.queue ?? "",
        key: opts.key ?? "",
        labels: opts.labels ?? {},
        units: opts.units ?? 0,
        uniqueWhile:
          opts.uniqueWhile === undefined ? undefined
          : opts.uniqueWhile === "unfinished" ? { mode: { case: "unfinished", value: true } }
          : { mode: { case: "window", value: durationFromMs(opts.uniqueWhile.windowMs) } },
        files: Object.entries(opts.files ?? {}).map(([name, upload]) => ({ name, upload: typeof upload === "string" ? upload : upload.upload })),
      };
      const { task } = await tasks.createTask(request);
      return task!;
    },
    upload: (name: string, data: Readable | AsyncIterable<Uint8Array>, size?: number) => uploadFile(fileOptions, name, data, size),
    download: (taskId: bigint, name: string, attempt?: number) => downloadArtifact(fileOptions, taskId, name, attempt),
    async waitFor(id: bigint, opts: { timeoutMs?: number; intervalMs?: number; signal?: AbortSignal } = {}): Promise<Task> {
      const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
      for (;;) {
        const { task } = await tasks.getTask({ id }, { signal: opts.signal });
        if (task && terminal.has(task.status)) return task;
        if (Date.now() > deadline) throw new Error(`task ${id} did not finish within ${opts.timeoutMs ?? 60_000} ms (status ${TaskStatus[task?.status ?? 0]})`);
        await sleep(opts.intervalMs ?? 100, undefined, { signal: opts.signal });
      }
    },
  });
}
