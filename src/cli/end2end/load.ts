import type { Client } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { setTimeout as sleep } from "node:timers/promises";
import { TaskStatus, type CreateTaskRequest, type Task, type TaskService } from "../../gen/task/v1/task_pb.js";
import { FINISHED_TASK_STATUSES } from "../../finished-statuses.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CreateTaskRequestSchema } from "../../gen/task/v1/task_pb.js";

/** How to load the system. */
export interface LoadOptions {
  tasks: number;
  types: string[];
  concurrency: number;
  /** Tasks per CreateTasks call; 1 uses CreateTask. */
  batch: number;
  timeoutMs: number;
  runId: string;
}

/** What is known of one of our tasks. */
export interface TrackedTask {
  id: bigint;
  type: string;
  status: TaskStatus;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  lastError: string;
}

/** Live counts for progress display. */
export interface LoadProgress {
  created: number;
  running: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  total: number;
  elapsedMs: number;
}

/** Everything the report is computed from. */
export interface LoadResult {
  tasks: TrackedTask[];
  startedAt: number;
  createdAllAt: number;
  finishedAt: number;
  timedOut: boolean;
}

const terminal = FINISHED_TASK_STATUSES;
const POLL_MS = 200;
const IDS_PER_LIST = 1000;

/** Parameters that make a real, quick, successful task of each type. */
export function parametersFor(type: string, runId: string, i: number): Record<string, unknown> {
  switch (type) {
    case "run_query":
      return { sql: "select $1::int as n, now() as at", params: [i] };
    case "send_email":
      return { to: "end2end@example.com", subject: `end2end ${runId} #${i}`, body: `Load test message ${i} of run ${runId}.` };
    case "shell":
      return { command: `echo end2end ${i}` };
    default:
      return {};
  }
}

/**
 * Creates `tasks` tasks (round-robin over `types`) with `concurrency` callers, then follows only
 * those tasks (by id) until each is terminal or the time runs out.
 */
export async function runLoad(client: Client<typeof TaskService>, options: LoadOptions, onProgress: (p: LoadProgress) => void): Promise<LoadResult> {
  const startedAt = Date.now();
  const deadline = startedAt + options.timeoutMs;
  const tracked = new Map<bigint, TrackedTask>();
  const requests: MessageInitShape<typeof CreateTaskRequestSchema>[] = Array.from({ length: options.tasks }, (_, i) => {
    const type = options.types[i % options.types.length]!;
    return { name: `end2end-${options.runId}-${i}`, type, parameters: parametersFor(type, options.runId, i) as never };
  });
  const batches: (typeof requests)[] = [];
  for (let i = 0; i < requests.length; i += options.batch) batches.push(requests.slice(i, i + options.batch));

  const track = (task: Task) => {
    tracked.set(task.id, {
      id: task.id,
      type: task.type,
      status: task.status,
      createdAt: task.createdAt ? timestampDate(task.createdAt).getTime() : Date.now(),
      lastError: task.lastError,
    });
  };
  let next = 0;
  const creators = Array.from({ length: Math.min(options.concurrency, batches.length) }, async () => {
    while (next < batches.length && Date.now() < deadline) {
      const batch = batches[next++]!;
      if (options.batch === 1) track((await client.createTask(batch[0]!)).task!);
      else (await client.createTasks({ tasks: batch as CreateTaskRequest[] })).tasks.forEach(track);
    }
  });
  let creating = true;
  const created = Promise.all(creators).finally(() => (creating = false));
  let createdAllAt = startedAt;
  created.then(() => (createdAllAt = Date.now()), () => undefined);

  const progress = (): LoadProgress => {
    const p = { created: tracked.size, running: 0, succeeded: 0, failed: 0, cancelled: 0, total: options.tasks, elapsedMs: Date.now() - startedAt };
    for (const t of tracked.values()) {
      if (t.status === TaskStatus.RUNNING) p.running++;
      else if (t.status === TaskStatus.SUCCEEDED) p.succeeded++;
      else if (t.status === TaskStatus.FAILED) p.failed++;
      else if (t.status === TaskStatus.CANCELLED) p.cancelled++;
    }
    return p;
  };

  let timedOut = false;
  for (;;) {
    await sleep(POLL_MS);
    const open = [...tracked.values()].filter((t) => !terminal.has(t.status)).map((t) => t.id);
    for (let i = 0; i < open.length; i += IDS_PER_LIST) {
      const ids = open.slice(i, i + IDS_PER_LIST);
      const { tasks } = await client.listTasks({ ids, pageSize: IDS_PER_LIST });
      for (const task of tasks) {
        const t = tracked.get(task.id);
        if (!t) continue;
        t.status = task.status;
        t.lastError = task.lastError;
        if (task.startedAt) t.startedAt = timestampDate(task.startedAt).getTime();
        if (task.finishedAt) t.finishedAt = timestampDate(task.finishedAt).getTime();
      }
    }
    onProgress(progress());
    if (!creating && [...tracked.values()].every((t) => terminal.has(t.status))) break;
    if (Date.now() > deadline) {
      timedOut = true;
      break;
    }
  }
  await created; // surfaces a creation error
  return { tasks: [...tracked.values()], startedAt, createdAllAt, finishedAt: Date.now(), timedOut };
}
