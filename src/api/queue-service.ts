import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Config } from "../config.js";
import { InvalidArgumentError } from "../errors.js";
import { QueueKeyUseSchema, QueueSchema, QueueService, UnmatchedLabelsSchema, WorkerSchema, WorkerService, type Queue, type UpdateQueueRequest } from "../gen/task/v1/queue_pb.js";
import { keyProblem, parseKeyTemplate } from "../key-template.js";
import type { Db } from "../store/db.js";
import { keyUse, listQueues, updateQueue, type KeyUse, type QueueChange, type QueueView } from "../store/queues.js";
import { hasPerKeyRateLimit } from "../store/rate-limits.js";
import { listLiveWorkers, liveSince, unmatchedLabels } from "../store/workers.js";
import { labelsOf } from "../labels.js";
import { durationFromMs } from "./convert.js";
import { Violations } from "./fields.js";
import { callerOf } from "./identity.js";

import { audited, type AuditActor } from "../store/audit.js";
import { auditActorOf } from "./audit-context.js";
/** What the queue and worker handlers need. */
export interface QueueServiceDeps {
  db: Db;
  /** leaseMs: a worker whose heartbeat is older is not live. */
  config?: Partial<Pick<Config, "leaseMs">>;
}

/** The default lease (config.ts), for deps built without a config. */
export const DEFAULT_LEASE_MS = 15_000;

/** Largest concurrency limit a queue may have. */
export const MAX_QUEUE_CONCURRENCY = 100_000;

/** The settings UpdateQueue may change, by update_mask path. */
const UPDATABLE = ["concurrency", "paused", "expire_after", "key_template", "key_concurrency", "key_limits", "key_weights"] as const;

/** Largest weight of a key in the turns (migration 0033: a weight-w key steps round(1000 / w) turns per task). */
export const MAX_KEY_WEIGHT = 1000;

/** Most named keys a queue may give limits of its own. */
export const MAX_KEY_LIMITS = 1000;

/** A queue as the API message (with its keys' use, for GetQueue). */
export function queueToProto(q: QueueView, now: Date, keys: KeyUse[] = []): Queue {
  return create(QueueSchema, {
    keyTemplate: q.keyTemplate ?? "",
    keyConcurrency: q.keyConcurrency ?? undefined,
    keyLimits: q.keyLimits,
    keyWeights: q.keyWeights,
    keyUse: keys.map((k) =>
      create(QueueKeyUseSchema, { key: k.key, running: BigInt(k.running), waiting: BigInt(k.waiting), limit: k.limit ?? undefined, waitReason: k.waitReason ?? "" }),
    ),
    name: q.name,
    paused: q.paused,
    concurrency: q.concurrency ?? undefined,
    expireAfter: q.expireAfterMs !== null ? durationFromMs(q.expireAfterMs) : undefined,
    running: BigInt(q.running),
    waiting: BigInt(q.waiting),
    oldestWaitingAge: q.oldestWaitingSince ? durationFromMs(Math.max(0, now.getTime() - q.oldestWaitingSince.getTime())) : undefined,
    workers: q.workers,
    updatedAt: q.updatedAt ? timestampFromDate(q.updatedAt) : undefined,
  });
}

/** Checks an UpdateQueue request: a valid name, a non-empty mask of known settings, a limit of 0 or more. */
export function validateUpdateQueue(req: UpdateQueueRequest): { name: string; change: QueueChange } {
  const name = validateQueueName(req.name);
  const paths = req.updateMask?.paths ?? [];
  if (paths.length === 0) throw InvalidArgumentError.of("update_mask", `name the settings to change: ${UPDATABLE.join(", ")}`);
  const change: QueueChange = {};
  const v = new Violations();
  for (const path of paths) {
    if (path === "concurrency") {
      const limit = req.settings?.concurrency;
      if (limit !== undefined && (!Number.isInteger(limit) || limit < 0 || limit > MAX_QUEUE_CONCURRENCY)) {
        v.add("settings.concurrency", `must be between 0 and ${MAX_QUEUE_CONCURRENCY} (unset: unlimited)`);
      }
      change.concurrency = limit ?? null;
    } else if (path === "paused") {
      change.paused = req.settings?.paused ?? false;
    } else if (path === "expire_after") {
      const ms = v.expireAfter("settings.expire_after", req.settings?.expireAfter);
      if (ms !== undefined) change.expireAfterMs = ms;
    } else if (path === "key_template") {
      const template = req.settings?.keyTemplate ?? "";
      try {
        if (template !== "") parseKeyTemplate(template);
        change.keyTemplate = template === "" ? null : template;
      } catch (err) {
        v.add("settings.key_template", (err as Error).message);
      }
    } else if (path === "key_concurrency") {
      const limit = req.settings?.keyConcurrency;
      if (limit !== undefined && (!Number.isInteger(limit) || limit < 0 || limit > MAX_QUEUE_CONCURRENCY)) {
        v.add("settings.key_concurrency", `must be between 0 and ${MAX_QUEUE_CONCURRENCY} (unset: unlimited)`);
      }
      change.keyConcurrency = limit ?? null;
    } else if (path === "key_limits") {
      const limits = req.settings?.keyLimits ?? {};
      checkPerKey(v, "key_limits", limits, 0, MAX_QUEUE_CONCURRENCY);
      change.keyLimits = { ...limits };
    } else if (path === "key_weights") {
      const weights = req.settings?.keyWeights ?? {};
      checkPerKey(v, "key_weights", weights, 1, MAX_KEY_WEIGHT);
      change.keyWeights = { ...weights };
    } else {
      v.add("update_mask", `unknown queue setting "${path.slice(0, 100)}" (settings: ${UPDATABLE.join(", ")})`);
    }
  }
  v.throwIfAny();
  return { name, change };
}

/** A queue name from a request, or InvalidArgument. */
/** A per-key setting (key_limits, key_weights): at most MAX_KEY_LIMITS keys, each a valid key with an integer value in [min, max]. */
function checkPerKey(v: Violations, field: string, values: Record<string, number>, min: number, max: number): void {
  if (Object.keys(values).length > MAX_KEY_LIMITS) v.add(`settings.${field}`, `must name at most ${MAX_KEY_LIMITS} keys`);
  for (const [key, value] of Object.entries(values)) {
    const at = `settings.${field}["${key.slice(0, 40)}"]`;
    const problem = keyProblem(key);
    if (problem) v.add(at, `the key ${problem}`);
    else if (!Number.isInteger(value) || value < min || value > max) v.add(at, `must be between ${min} and ${max}`);
  }
}

function validateQueueName(name: string, field = "name"): string {
  const v = new Violations();
  v.queueName(field, name);
  v.throwIfAny();
  return name;
}

/** The QueueService handlers. Errors are mapped by the routes' interceptor. */
export function createQueueService({ db: pair, config }: QueueServiceDeps): ServiceImpl<typeof QueueService> {
  const db = pair.kysely;
  const leaseMs = config?.leaseMs ?? DEFAULT_LEASE_MS;

  async function all(): Promise<Queue[]> {
    const since = await liveSince(db, leaseMs);
    const now = new Date(since.getTime() + leaseMs);
    return (await listQueues(db, since)).map((q) => queueToProto(q, now));
  }

  async function changed(name: string, change: QueueChange, action: string, actor: AuditActor): Promise<{ queue: Queue }> {
    await audited(db, actor, (trx) => updateQueue(trx, name, change), () => ({ action, resources: { queue: name }, parameters: { ...change } }));
    const queue = (await all()).find((q) => q.name === name);
    // updateQueue wrote the queue's row, so listQueues has it.
    return { queue: queue ?? create(QueueSchema, { name }) };
  }

  return {
    async listQueues(_req, ctx) {
      const who = callerOf(ctx);
      // A token restricted to queues sees those; one restricted only to types sees none (a queue's counts span every type).
      const visible = (q: Queue) => (who.queues.length > 0 ? who.queues.includes(q.name) : who.types.length === 0);
      return { queues: (await all()).filter(visible) };
    },
    async getQueue(req) {
      const name = validateQueueName(req.name);
      const since = await liveSince(db, leaseMs);
      const queue = (await listQueues(db, since)).find((q) => q.name === name);
      if (!queue) return { queue: create(QueueSchema, { name }) };
      const keyed = queue.keyConcurrency !== null || Object.keys(queue.keyLimits).length > 0 || (await hasPerKeyRateLimit(db, name));
      return { queue: queueToProto(queue, new Date(since.getTime() + leaseMs), keyed ? await keyUse(db, name) : []) };
    },
    async updateQueue(req, ctx) {
      const { name, change } = validateUpdateQueue(req);
      return changed(name, change, "queue_update", auditActorOf(ctx));
    },
    async pauseQueue(req, ctx) {
      return changed(validateQueueName(req.name), { paused: true }, "queue_pause", auditActorOf(ctx));
    },
    async resumeQueue(req, ctx) {
      return changed(validateQueueName(req.name), { paused: false }, "queue_resume", auditActorOf(ctx));
    },
  };
}

/** The WorkerService handlers. */
export function createWorkerService({ db: pair, config }: QueueServiceDeps): ServiceImpl<typeof WorkerService> {
  const leaseMs = config?.leaseMs ?? DEFAULT_LEASE_MS;
  return {
    async listWorkers() {
      const workers = await listLiveWorkers(pair.kysely, leaseMs);
      const unmatched = await unmatchedLabels(pair.kysely, leaseMs);
      return {
        unmatched: unmatched.map((u) => create(UnmatchedLabelsSchema, { labels: labelsOf(u.labels), waiting: BigInt(u.waiting) })),
        workers: workers.map((w) =>
          create(WorkerSchema, {
            id: w.id,
            host: w.host ?? "",
            pid: w.pid ?? 0,
            slots: w.slots,
            busy: w.busy,
            types: w.types,
            queues: w.queues,
            labels: labelsOf(w.labels),
            startedAt: timestampFromDate(w.startedAt),
            lastHeartbeatAt: timestampFromDate(w.heartbeatAt),
            agentName: w.agentName ?? "",
            address: w.address ?? "",
            replica: w.replica ?? "",
            version: w.version ?? "",
          }),
        ),
      };
    },
  };
}
