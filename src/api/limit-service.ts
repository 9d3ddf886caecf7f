import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { InvalidArgumentError, RateLimitNotFoundError } from "../errors.js";
import { RateLimitSchema, RateLimitService, type RateLimit as ProtoRateLimit, type SetRateLimitRequest } from "../gen/task/v1/limit_pb.js";
import { audited } from "../store/audit.js";
import type { Db } from "../store/db.js";
import { deleteRateLimit, listRateLimits, setRateLimit, type RateLimit, type RateLimitView } from "../store/rate-limits.js";
import { auditActorOf } from "./audit-context.js";
import { durationFromMs, durationToMs } from "./convert.js";
import { Violations } from "./fields.js";

/** Largest rate and burst of a limit. */
export const MAX_RATE = 1_000_000;

const NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

/** A limit as the API message. */
function toProto(l: RateLimit, use?: RateLimitView): ProtoRateLimit {
  return create(RateLimitSchema, {
    name: l.name,
    rate: l.rate,
    period: durationFromMs(l.periodMs),
    burst: l.burst,
    perKey: l.perKey,
    queue: l.queue ?? "",
    taskType: l.taskType ?? "",
    tokens: use?.tokens ?? 0,
    buckets: BigInt(use?.buckets ?? 0),
    waiting: BigInt(use?.waiting ?? 0),
  });
}

/** Checks a SetRateLimit request: a name, a rate and burst of 1 or more, a period of 1 s to 1 day, exactly one scope. */
export function validateSetRateLimit(req: SetRateLimitRequest): RateLimit {
  const l = req.limit;
  const v = new Violations();
  if (!l) throw InvalidArgumentError.of("limit", "is required");
  if (!NAME.test(l.name)) v.add("limit.name", "must be 1-64 characters a-z, 0-9, '_', '-', '.', starting with a letter or digit");
  if (!Number.isInteger(l.rate) || l.rate < 1 || l.rate > MAX_RATE) v.add("limit.rate", `must be between 1 and ${MAX_RATE}`);
  if (!Number.isInteger(l.burst) || l.burst < 1 || l.burst > MAX_RATE) v.add("limit.burst", `must be between 1 and ${MAX_RATE}`);
  const periodMs = l.period ? durationToMs(l.period) : 0;
  if (!(periodMs >= 1000 && periodMs <= 86_400_000) || !Number.isInteger(periodMs)) v.add("limit.period", "must be between 1 s and 1 day, in whole ms");
  if ((l.queue === "") === (l.taskType === "")) v.add("limit.queue", "name exactly one scope: a queue or a task_type");
  else if (l.queue !== "") v.queueName("limit.queue", l.queue);
  else v.text("limit.task_type", l.taskType, 200);
  v.throwIfAny();
  return { name: l.name, rate: l.rate, periodMs, burst: l.burst, perKey: l.perKey, queue: l.queue || null, taskType: l.taskType || null };
}

/** The RateLimitService handlers (roles.ts: admin to change, reader to list). Errors are mapped by the routes' interceptor. */
export function createRateLimitService({ db: pair }: { db: Db }): ServiceImpl<typeof RateLimitService> {
  const db = pair.kysely;
  return {
    async setRateLimit(req, ctx) {
      const limit = validateSetRateLimit(req);
      const saved = await audited(
        db,
        auditActorOf(ctx),
        async (trx) => {
          const done = await setRateLimit(trx, limit);
          if (!done) throw InvalidArgumentError.of(limit.queue ? "limit.queue" : "limit.task_type", "another rate limit already has this scope (one limit per queue, one per type)");
          return done;
        },
        (l) => ({ action: "rate_limit_set", resources: { rate_limit: l.name }, parameters: { ...l } }),
      );
      const use = (await listRateLimits(db)).find((l) => l.name === saved.name);
      return { limit: toProto(saved, use) };
    },
    async listRateLimits() {
      return { limits: (await listRateLimits(db)).map((l) => toProto(l, l)) };
    },
    async deleteRateLimit(req, ctx) {
      if (!NAME.test(req.name)) throw InvalidArgumentError.of("name", "must be 1-64 characters a-z, 0-9, '_', '-', '.', starting with a letter or digit");
      await audited(
        db,
        auditActorOf(ctx),
        async (trx) => {
          if (!(await deleteRateLimit(trx, req.name))) throw new RateLimitNotFoundError(req.name);
        },
        () => ({ action: "rate_limit_delete", resources: { rate_limit: req.name } }),
      );
      return {};
    },
  };
}
