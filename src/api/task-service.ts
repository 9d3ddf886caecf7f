import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Config } from "../config.js";
import { InvalidArgumentError, InvalidTransitionError, TaskNotFoundError, TaskTypeDisabledError } from "../errors.js";
import {
  TaskService,
  TaskStatusCountSchema,
  TaskTypeSchema,
  TaskTypeStatusCountSchema,
  TaskTypeVersionSchema,
  TaskQueueStatusCountSchema,
  ShellCheckFindingSchema,
  ShellCheckLevel,
  type CreateTaskRequest,
} from "../gen/task/v1/task_pb.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import { TaskTypeCatalog } from "../plugins/catalog.js";
import type { PluginRegistry } from "../plugins/registry.js";
import { taskStatuses, type TaskRow } from "../store/schema.js";
import { listTaskHistory } from "../store/task-history.js";
import { countTaskGroups } from "../store/task-counts.js";
import { FINISHES_KEPT_MINUTES, lastMinutesFinishes } from "../store/task-finishes.js";
import { listLiveWorkers, someWorkerHasLabels } from "../store/workers.js";
import { findProgress } from "../store/task-progress.js";
import type { Db } from "../store/db.js";
import { GroupCommit } from "../store/group-commit.js";
import { findTask, insertTasksAudited, listTasks, type NewTask } from "../store/tasks.js";
import { insertUnique } from "./create-resolve.js";
import { actorText, audited, recordAudit, type AuditActor, type AuditChange } from "../store/audit.js";
import { auditActorOf } from "./audit-context.js";
import { cancelTasks, retryTasks } from "../store/lifecycle/index.js";
import { durationFromMs, historyToProto, statusToProto, taskToProto } from "./convert.js";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { TaskEvents } from "./task-events.js";
import { TaskFeed } from "./task-feed.js";
import { getTaskLogs, watchTask } from "./task-watch.js";
import { Violations } from "./fields.js";
import { callerOf, type Identity } from "./identity.js";
import { canSeeTask, narrowFilter, requireRole, requireTaskScope } from "./roles.js";
import { deriveKeys, encodePageToken, requireUniqueKeys, requireUnitsFit, validateCreateTask, validateListTasks, validateTaskId } from "./validate.js";
import { keyTemplates, waitReason } from "../store/queues.js";
import { limitsOf, rateWaitReason } from "../store/rate-limits.js";
import { startCreateSpan } from "../tracing.js";
import { attachUploads, DEFAULT_FILE_CAPS } from "../store/files.js";
import { listFilesOfTask, validateFileInputs } from "./task-files.js";
import { shellCheckerFor, type ShellChecker, type ShellFinding } from "./shell-check.js";

const FINDING_LEVELS = { error: ShellCheckLevel.ERROR, warning: ShellCheckLevel.WARNING, info: ShellCheckLevel.INFO, style: ShellCheckLevel.STYLE } as const;

/** A shellcheck finding as the API returns it. */
function findingToProto(f: ShellFinding) {
  return create(ShellCheckFindingSchema, { field: f.field, line: f.line, column: f.column, level: FINDING_LEVELS[f.level], code: f.code, message: f.message });
}

/** GetTaskThroughput's window when the request names none: the last hour. */
const DEFAULT_THROUGHPUT_MINUTES = 60;

/** What the handlers need. */
export interface TaskServiceDeps {
  db: Db;
  /** Wakes WatchTask streams; see TaskEvents. */
  events: TaskEvents;
  /** The WatchTasks change feed; one per server process (made here when absent). */
  feed?: TaskFeed;
  /** The types this process has code for (the built-ins): registered in the catalog on first use. */
  registry: PluginRegistry;
  /** The task types registered in PostgreSQL; built over `registry` when not given. */
  catalog?: TaskTypeCatalog;
  /** leaseMs: how recent a worker's heartbeat must be for it to count as live (default 15 s). */
  config: Pick<Config, "maxBatchSize"> &
    Partial<Pick<Config, "leaseMs" | "shellRole" | "filesMaxTaskBytes" | "shellCheckTimeoutMs" | "shellCheckConcurrency" | "shellCheckWaitMs" | "shellcheck">>;
  logger: Logger;
  metrics?: Metrics;
  /** Checks shell commands at create (one per server: its concurrency cap is the server's); made from `config` when absent. */
  shellChecker?: ShellChecker;
}

/** Throws TaskTypeDisabledError (FailedPrecondition) unless tasks of `type` can be queued here. */
async function assertRunnable(catalog: TaskTypeCatalog, type: string): Promise<void> {
  try {
    await catalog.withTypes([type], (types) => types.resolve(type));
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw new TaskTypeDisabledError(type, "no worker has registered this type");
    throw err;
  }
}

/** The catalog a service validates with: the one given, or one over the process's own registry. */
export function catalogFor(deps: Pick<TaskServiceDeps, "db" | "registry" | "catalog" | "config">): TaskTypeCatalog {
  return deps.catalog ?? new TaskTypeCatalog({ db: deps.db.kysely, local: deps.registry, liveMs: deps.config.leaseMs ?? DEFAULT_LIVE_MS });
}

/** How recently a worker must have heartbeated to count as serving its types, when no lease is configured. */
const DEFAULT_LIVE_MS = 15_000;

/** The audit row of created tasks: their ids, and what they are (never their parameters, which may hold secrets). */
export function createdChange(rows: TaskRow[], batch = false): AuditChange {
  const tasks = rows.map((r) => r.id);
  if (!batch) {
    const [r] = rows;
    return { action: "create", resources: { tasks }, parameters: { name: r!.name, type: r!.type, queue: r!.queue, priority: r!.priority } };
  }
  return { action: "create_batch", resources: { tasks }, parameters: { count: rows.length, types: [...new Set(rows.map((r) => r.type))].sort(), queues: [...new Set(rows.map((r) => r.queue))].sort() } };
}

/** The TaskService handlers: validate, call the store, convert. Errors are mapped by an interceptor. */
export function createTaskService(deps: TaskServiceDeps): ServiceImpl<typeof TaskService> {
  const { db: pair, events, feed: sharedFeed, config, metrics, logger } = deps;
  const db = pair.kysely;
  const catalog = catalogFor(deps);
  // Concurrent single CreateTask calls share one insert statement (and commit): see group-commit.ts.
  // Each create's audit row is written in the same transaction as the statement that inserts it.
  // (Unkeyed creates insert every task, so rows[i] is items[i]'s.)
  const singles = new GroupCommit<{ task: NewTask; actor: AuditActor }, TaskRow>(
    (items) => insertTasksAudited(pair, items.map((i) => i.task), (rows) => rows.map((row, i) => ({ who: items[i]!.actor, change: createdChange([row]) }))),
    { maxBatch: Math.min(config.maxBatchSize, 500), maxInFlight: 2 },
  );
  const feed = sharedFeed ?? new TaskFeed(db, events, logger);
  const shellRole = config.shellRole ?? "admin";
  const shellChecker = deps.shellChecker ?? shellCheckerFor(config, logger);
  /** Throws PermissionDenied unless the caller may run tasks of this type (shell needs the shell role). */
  const requireTypeAllowed = (who: Identity, type: string) => {
    if (type === "shell") requireRole(who, shellRole, "a shell task");
  };
  // Queues' key templates, read at most once a second per queue (a changed template applies to the
  // tasks created from a second later), so a create does not cost a read of queues each time.
  const templateCache = new Map<string, { template: string | undefined; at: number }>();
  async function templatesOf(queues: string[]): Promise<Map<string, string>> {
    const now = Date.now();
    const stale = queues.filter((q) => (templateCache.get(q)?.at ?? -Infinity) < now - KEY_TEMPLATE_TTL_MS);
    if (stale.length > 0) {
      const read = await keyTemplates(db, stale);
      for (const q of stale) templateCache.set(q, { template: read.get(q), at: now });
    }
    return new Map(queues.flatMap((q) => {
      const template = templateCache.get(q)?.template;
      return template === undefined ? [] : [[q, template] as const];
    }));
  }
  /** Inserts validated tasks atomically and resolves idempotent replays; rows in request order. */
  async function createMany(requests: CreateTaskRequest[], prefix: (i: number) => string, who: Identity, actor: AuditActor, ctx: HandlerContext) {
    // The call's span (a child of its traceparent header, or a new trace): its traceparent is stored with each task.
    const span = startCreateSpan(requests.length > 1 ? "CreateTasks" : "CreateTask", ctx.requestHeader.get("traceparent"), requests.length);
    try {
      const results = await createTraced(requests, prefix, who, actor, span.traceparent);
      span.end();
      return results;
    } catch (err) {
      span.end(err);
      throw err;
    }
  }

  async function createTraced(requests: CreateTaskRequest[], prefix: (i: number) => string, who: Identity, actor: AuditActor, traceparent: string | null) {
    const validated = await catalog.withTypes(
      requests.map((req) => req.type),
      (types) => requests.map((req, i) => ({ ...validateCreateTask(req, types, prefix(i)), traceparent })),
    );
    // Keys from the queues' templates (one read, of the queues that have one) for tasks created without one.
    const unkeyedQueues = [...new Set(validated.filter((t) => !t.key).map((t) => t.queue ?? "default"))];
    const tasks = deriveKeys(validated, await templatesOf(unkeyedQueues), prefix);
    requireUniqueKeys(tasks, prefix);
    // Units beyond 1 must fit the burst of the task's rate limit: one read, only when a task asks for more.
    const big = tasks.filter((t) => (t.units ?? 1) > 1);
    if (big.length > 0) requireUnitsFit(tasks, await limitsOf(db, big.map((t) => ({ queue: t.queue ?? "default", type: t.type }))), prefix);
    const inputs = requests.map((req, i) => validateFileInputs(req.files, prefix(i)));
    // After validation (which resolves each task's queue), before anything is written.
    tasks.forEach((task, i) => {
      requireTypeAllowed(who, task.type);
      requireTaskScope(who, { type: task.type, queue: task.queue ?? "default" }, prefix(i) && `${prefix(i).slice(0, -1)}: `);
    });
    // Shell commands are parsed (bash -n) and linted (shellcheck) before anything is written, and
    // only for callers allowed to create them (each check is a child process: see shell-check.ts).
    const warnings = await shellChecker.checkAll(
      tasks.flatMap((task, i) => (task.type === "shell" ? [{ command: String(task.parameters.command), field: `${prefix(i)}parameters.command`, strict: requests[i]!.strictShellCheck }] : [])),
    );
    const keyed = tasks.some((t) => t.idempotencyKey !== null || t.uniqueWhile);
    // Input files are taken from their uploads in the create's transaction: both or neither.
    const withFiles = inputs.some((files) => files.length > 0);
    // An idempotent replay, or a create answered by unique_while, changes nothing, so only the tasks
    // created now are audited.
    const batch = requests.length > 1;
    const results = keyed || withFiles
      ? // With idempotency keys or unique_while, inserting and checking the replays (or the unique
        // holders, under their keys' locks) must commit or fail together; with files, inserting and
        // taking the uploads.
        await db.transaction().execute(async (trx) => {
          const resolved = await insertUnique(tasks, trx);
          for (const [i, r] of resolved.entries()) {
            if (r.created) await attachUploads(trx, r.row.id, inputs[i]!, config.filesMaxTaskBytes ?? DEFAULT_FILE_CAPS.perTaskBytes, `${prefix(i)}files`);
          }
          const created = resolved.filter((r) => r.created).map((r) => r.row);
          if (created.length > 0) await recordAudit(trx, actor, [createdChange(created, batch)]);
          return resolved;
        })
      : !batch
        ? [{ row: await singles.write({ task: tasks[0]!, actor }), created: true }]
        : (await insertTasksAudited(pair, tasks, (rows) => [{ who: actor, change: createdChange(rows, true) }])).map((row) => ({ row, created: true }));
    for (const { row, created } of results) if (created) metrics?.tasksCreated.inc({ type: row.type });
    return { results, warnings };
  }

  return {
    async createTask(req, ctx) {
      const { results, warnings } = await createMany([req], () => "", callerOf(ctx), auditActorOf(ctx), ctx);
      const [first] = results;
      return { task: taskToProto(first!.row), created: first!.created, warnings: warnings.map(findingToProto) };
    },

    async createTasks(req, ctx) {
      if (req.tasks.length === 0) throw InvalidArgumentError.of("tasks", "must contain at least one task");
      if (req.tasks.length > config.maxBatchSize) {
        throw InvalidArgumentError.of("tasks", `must contain at most ${config.maxBatchSize} tasks`);
      }
      const { results, warnings } = await createMany(req.tasks, (i) => `tasks[${i}].`, callerOf(ctx), auditActorOf(ctx), ctx);
      return { tasks: results.map(({ row }) => taskToProto(row)), created: results.map(({ created }) => created), warnings: warnings.map(findingToProto) };
    },

    async getTask(req) {
      const id = validateTaskId(req.id);
      const row = await findTask(db, id);
      if (!row) throw new TaskNotFoundError(id);
      const task = taskToProto(row, (await findProgress(db, [id])).get(id));
      // What holds a waiting task (its queue or its key at a limit, a pause): one read of its queue's row.
      if (row.status === "queued" || row.status === "retrying") {
        // Labels no live worker has come first: freeing the queue or the key would not start it.
        const unroutable = row.labels !== null && !(await someWorkerHasLabels(db, row.labels, config.leaseMs ?? DEFAULT_LIVE_MS));
        task.waitReason = unroutable
          ? `no live worker or agent has labels ${row.labels!.join(",")}`
          : (await waitReason(db, row.queue, row.key)) ?? (await rateWaitReason(db, row.queue, row.type, row.key, row.units)) ?? "";
      }
      return { task };
    },

    async listTasks(req, ctx) {
      const requested = validateListTasks(req);
      // A restricted token lists only its queues and types (nothing, if it asked only for others).
      const filter = narrowFilter(callerOf(ctx), requested);
      if (!filter) return { tasks: [], nextPageToken: "", totalCount: 0n, totalCountExact: true, pageSize: requested.pageSize, pageNumber: requested.pageNumber };
      // One extra row tells whether another page exists.
      const { rows, total, totalExact } = await listTasks(db, { ...filter, limit: filter.pageSize + 1 });
      const page = rows.slice(0, filter.pageSize);
      const last = page.at(-1);
      const progress = await findProgress(db, page.filter((r) => r.attempts > 0).map((r) => r.id));
      return {
        tasks: page.map((row) => taskToProto(row, progress.get(row.id))),
        nextPageToken: rows.length > filter.pageSize && last ? encodePageToken(last.id) : "",
        totalCount: BigInt(total),
        totalCountExact: totalExact,
        pageSize: filter.pageSize,
        pageNumber: filter.pageNumber,
      };
    },

    async getTaskHistory(req) {
      const id = validateTaskId(req.id);
      const rows = await listTaskHistory(db, id);
      // A task always has at least its "created" row, so none means no such task.
      if (rows.length === 0 && !(await findTask(db, id))) throw new TaskNotFoundError(id);
      return { history: rows.map(historyToProto) };
    },

    async getTaskStatusCounts(_req, ctx) {
      const who = callerOf(ctx);
      const all = (await countTaskGroups(db)).filter((g) => canSeeTask(who, g));
      const counts = new Map<string, number>();
      for (const g of all) counts.set(g.status, (counts.get(g.status) ?? 0) + g.count);
      const sumBy = (key: (g: (typeof all)[number]) => string) => {
        const sums = new Map<string, { name: string; status: (typeof all)[number]["status"]; count: number }>();
        for (const g of all) {
          const k = `${key(g)}\u0000${g.status}`;
          const entry = sums.get(k) ?? { name: key(g), status: g.status, count: 0 };
          entry.count += g.count;
          sums.set(k, entry);
        }
        return [...sums.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : taskStatuses.indexOf(a.status) - taskStatuses.indexOf(b.status)));
      };
      let total = 0n;
      const entries = taskStatuses.map((status) => {
        const count = BigInt(counts.get(status) ?? 0);
        total += count;
        return create(TaskStatusCountSchema, { status: statusToProto(status), count });
      });
      const typeCounts = sumBy((g) => g.type).map((g) => create(TaskTypeStatusCountSchema, { type: g.name, status: statusToProto(g.status), count: BigInt(g.count) }));
      const queueCounts = sumBy((g) => g.queue).map((g) => create(TaskQueueStatusCountSchema, { queue: g.name, status: statusToProto(g.status), count: BigInt(g.count) }));
      return { counts: entries, total, typeCounts, queueCounts };
    },

    async getTaskThroughput(req) {
      const minutes = req.minutes || DEFAULT_THROUGHPUT_MINUTES;
      if (minutes < 1 || minutes > FINISHES_KEPT_MINUTES) throw InvalidArgumentError.of("minutes", `must be between 1 and ${FINISHES_KEPT_MINUTES} (0 for ${DEFAULT_THROUGHPUT_MINUTES})`);
      const buckets = await lastMinutesFinishes(db, minutes);
      return {
        buckets: buckets.map((b) => ({
          startTime: timestampFromDate(b.minute),
          succeeded: BigInt(b.counts.succeeded),
          failed: BigInt(b.counts.failed),
          cancelled: BigInt(b.counts.cancelled),
          retried: BigInt(b.counts.retrying),
        })),
      };
    },

    async cancelTask(req, ctx) {
      const id = validateTaskId(req.id);
      const v = new Violations();
      const reason = v.reason("reason", req.reason);
      v.throwIfAny();
      const actor = auditActorOf(ctx);
      const [row] = await audited(
        db,
        actor,
        (trx) => cancelTasks(trx, [id], { details: `cancelled by ${actorText(actor)}`, reason }),
        (rows) => (rows.length > 0 ? { action: "cancel", resources: { tasks: [id] }, reason } : undefined),
      );
      if (row) return { task: taskToProto(row) };
      // Only a finished task (or none) refuses a cancel.
      const current = await findTask(db, id);
      if (!current) throw new TaskNotFoundError(id);
      throw new InvalidTransitionError(id, current.status, "cancel");
    },

    async retryTask(req, ctx) {
      const id = validateTaskId(req.id);
      const before = await findTask(db, id);
      if (!before) throw new TaskNotFoundError(id);
      // A retry runs the command again: the same role as creating it.
      requireTypeAllowed(callerOf(ctx), before.type);
      // Like create: a type this server will not run (shell without --enable-shell) is refused,
      // rather than re-queued to fail again or to run code the operator turned off.
      await assertRunnable(catalog, before.type);
      const actor = auditActorOf(ctx);
      const details = `manual retry by ${actorText(actor)}: back to queued with attempts reset (was ${before.status} after ${before.attempts} attempt${before.attempts === 1 ? "" : "s"})`;
      const [row] = await audited(
        db,
        actor,
        (trx) => retryTasks(trx, [id], details),
        (rows) => (rows.length > 0 ? { action: "retry", resources: { tasks: [id] }, parameters: { was: before.status, attempts: before.attempts } } : undefined),
      );
      if (!row) {
        const current = (await findTask(db, id)) ?? before;
        throw new InvalidTransitionError(id, current.status, "retry");
      }
      return { task: taskToProto(row) };
    },

    getTaskLogs: (req) => getTaskLogs(db, req),
    listTaskFiles: (req) => listFilesOfTask(db, req),

    watchTask: (req, ctx) => watchTask(db, events, req, ctx),
    watchTasks: (req, ctx) => feed.watch(req, ctx),

    async listTaskTypes(_req, ctx) {
      const who = callerOf(ctx);
      const entries = (await catalog.list()).filter((entry) => who.types.length === 0 || who.types.includes(entry.name));
      return {
        types: entries.map((entry) =>
          create(TaskTypeSchema, {
            name: entry.name,
            description: entry.current.description,
            parameterSchema: entry.current.parameterSchema as never,
            enabled: entry.disabledReason === undefined,
            defaultMaxAttempts: entry.current.defaultMaxAttempts,
            defaultTimeout: durationFromMs(entry.current.defaultTimeoutMs),
            served: entry.workers.length > 0,
            workers: entry.workers,
            schemaHash: entry.current.schemaHash,
            defaultQueue: entry.current.defaultQueue ?? "",
            versions: entry.versions.map((v) =>
              create(TaskTypeVersionSchema, {
                schemaHash: v.schemaHash,
                registeredAt: timestampFromDate(v.registeredAt),
                workers: v.workers,
                current: v === entry.current,
                parameterSchema: v.parameterSchema as never,
              }),
            ),
            liveWorkers: entry.workers.length,
          }),
        ),
      };
    },
  };
}

/** How long a create trusts the key templates it read. */
const KEY_TEMPLATE_TTL_MS = 1000;
