import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import { parseApiTokenEntries } from "../config.js";
import { errorMessage, PermissionDeniedError, TaskNotFoundError } from "../errors.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import type { Logger } from "../logger.js";
import { findActiveApiToken, touchApiToken } from "../store/api-tokens.js";
import type { Database } from "../store/schema.js";
import { findTask } from "../store/tasks.js";
import { toConnectError } from "./connect-errors.js";
import { identityKey, LOCAL_IDENTITY, type Identity } from "./identity.js";
import { canSeeTask, METHOD_RULES, refuseRestricted, requireQueueScope, requireRole, type MethodRule } from "./roles.js";

/** Services anyone may call: health checks come from probes and load balancers that hold no token. */
const PUBLIC_SERVICES = new Set([Health.typeName]);

/**
 * How long a stored token, once looked up, is trusted without asking the database again. A revoked
 * (or expired) token is refused by every replica within this; a busy token costs one indexed read
 * per this interval instead of one per request.
 */
export const TOKEN_CACHE_MS = 500;
/** Lookups kept at most; past it the cache starts over (only valid tokens are kept, so this is many clients). */
const TOKEN_CACHE_MAX = 10_000;
/** last_used_at is written when the stored value is older than this (src/store/api-tokens.ts agrees). */
const TOUCH_AFTER_MS = 60_000;

/** A fixed-length digest, so comparing two of them takes the same time whatever the tokens' lengths. */
export function tokenDigest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

/** What a bearer token resolved to: the caller, or why it was refused (Unauthenticated). */
export type Authentication = { identity: Identity } | { problem: string };

interface CachedToken {
  identity: Identity;
  id: string;
  expiresAt: number | null;
  lastUsedAt: number | null;
  checkedAt: number;
}

/**
 * Turns an Authorization header into an Identity: the tokens of TASK_API_TOKENS (compared as SHA-256
 * digests in constant time, every one each time), then the stored tokens (looked up by the digest,
 * each lookup trusted for TOKEN_CACHE_MS). A server without configured tokens takes a request without
 * a header as `local`; a token it is given must still be valid.
 */
export class Authenticator {
  private readonly configured: { identity: Identity; digest: Buffer }[];
  private readonly cache = new Map<string, CachedToken>();

  constructor(
    private readonly db: Kysely<Database>,
    entries: readonly string[],
    private readonly logger: Logger,
  ) {
    this.configured = parseApiTokenEntries(entries).tokens.map((t) => ({
      identity: { name: t.name, role: t.role, local: false, source: "config", queues: [], types: [] },
      digest: tokenDigest(t.token),
    }));
  }

  /** Whether every request must present a token (TASK_API_TOKENS is set). */
  get required(): boolean {
    return this.configured.length > 0;
  }

  /** The configured (TASK_API_TOKENS) tokens' identities, for ListTokens. */
  configuredIdentities(): Identity[] {
    return this.configured.map((c) => c.identity);
  }

  /** Resolves an Authorization header (empty or absent: none was sent). */
  async authenticate(header: string | undefined | null): Promise<Authentication> {
    if (!header) return this.required ? { problem: "missing bearer token" } : { identity: LOCAL_IDENTITY };
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match) return { problem: "missing bearer token" };
    const presented = tokenDigest(match[1]!.trim());
    // No short-circuit: which configured token matched (if any) must not show in the timing either.
    let found: Identity | undefined;
    for (const c of this.configured) if (timingSafeEqual(c.digest, presented) && !found) found = c.identity;
    if (found) return { identity: found };
    // A stored token is found by its digest through a unique index: the lookup compares hashes of
    // 256-bit random secrets, so its timing tells nothing useful about any secret.
    const stored = await this.lookup(presented);
    return stored ? { identity: stored } : { problem: "invalid bearer token" };
  }

  private async lookup(digest: Buffer): Promise<Identity | undefined> {
    const key = digest.toString("hex");
    const now = Date.now();
    const cached = this.cache.get(key);
    if (cached && now - cached.checkedAt < TOKEN_CACHE_MS && (cached.expiresAt === null || cached.expiresAt > now)) return cached.identity;
    const row = await findActiveApiToken(this.db, digest);
    if (!row) {
      this.cache.delete(key);
      return undefined;
    }
    const identity: Identity = { name: row.name, role: row.role, local: false, source: "database", queues: row.queues, types: row.types, labels: row.labels };
    const lastUsedAt = row.last_used_at?.getTime() ?? null;
    if (this.cache.size >= TOKEN_CACHE_MAX) this.cache.clear();
    this.cache.set(key, { identity, id: row.id, expiresAt: row.expires_at?.getTime() ?? null, lastUsedAt, checkedAt: now });
    if (lastUsedAt === null || now - lastUsedAt > TOUCH_AFTER_MS) {
      // Best effort, off the request's path: a failed write only leaves last_used_at older.
      touchApiToken(this.db, row.id).catch((err: unknown) => this.logger.warn({ token: row.name, err: errorMessage(err) }, "could not record token use"));
    }
    return identity;
  }
}

/** The rule for an RPC; one missing from the table is refused to everyone (deny by default). */
function ruleFor(service: string, method: string): MethodRule {
  const rule = METHOD_RULES[`${service}/${method}`];
  if (!rule) throw new PermissionDeniedError(`${service}/${method} is not in the API's role table, so no one may call it`);
  return rule;
}

/**
 * Checks what a caller may do with one request, before its handler runs: the role the rule needs,
 * then, for a token restricted to queues or types, the rule's restricted access (a task by id
 * outside the restriction is NotFound; a queue outside it, or an RPC across everything, is
 * PermissionDenied). `what` names the call in messages.
 */
export async function authorize(db: Kysely<Database>, who: Identity, rule: MethodRule, what: string, target: { taskId?: string; queue?: string }): Promise<void> {
  requireRole(who, rule.role, what);
  if (who.queues.length === 0 && who.types.length === 0) return;
  switch (rule.restricted) {
    case "allow":
    case "handler":
      return;
    case "refuse":
      return refuseRestricted(who, what);
    case "queue":
      return requireQueueScope(who, target.queue ?? "");
    case "task": {
      // A malformed id is left to the handler's validation (InvalidArgument).
      if (!target.taskId || !/^[1-9]\d{0,18}$/.test(target.taskId)) return;
      const task = await findTask(db, target.taskId);
      if (task && !canSeeTask(who, task)) throw new TaskNotFoundError(target.taskId);
      return;
    }
  }
}

/**
 * Authenticates every RPC but health checks (Unauthenticated without a valid token), authorizes it by
 * the role table (roles.ts), and puts the caller in the context values (identityKey) for handlers.
 */
export function authInterceptor(auth: Authenticator, db: Kysely<Database>, logger: Logger): Interceptor {
  return (next) => async (req) => {
    if (PUBLIC_SERVICES.has(req.service.typeName)) return next(req);
    let who: Identity;
    try {
      const result = await auth.authenticate(req.header.get("authorization"));
      if ("problem" in result) throw new ConnectError(result.problem, Code.Unauthenticated);
      who = result.identity;
      let message: { id?: unknown; name?: unknown } | undefined;
      if (!req.stream) {
        message = req.message as typeof message;
      } else if (req.method.methodKind === "server_streaming") {
        // HAZARD: a server-streaming request reaches interceptors as a stream of its one message
        // (WatchTask's id is in there). Read it here, and hand the handler a stream of that message.
        const first = await req.message[Symbol.asyncIterator]().next();
        message = first.done ? undefined : (first.value as typeof message);
        req = { ...req, message: (async function* () { if (!first.done) yield first.value; })() };
      }
      await authorize(db, who, ruleFor(req.service.typeName, req.method.name), req.method.name, {
        taskId: typeof message?.id === "bigint" ? message.id.toString() : undefined,
        queue: typeof message?.name === "string" ? message.name : undefined,
      });
    } catch (err) {
      throw toConnectError(err, logger.child({ rpc: req.method.name }));
    }
    req.contextValues.set(identityKey, who);
    return next(req);
  };
}

/**
 * The same checks for a plain HTTP route (the log download, /metrics): the caller, or the HTTP status
 * and text to answer (401 without a valid token, 403 for a role that is not enough, 404 for a task
 * outside a restricted token's reach).
 */
export async function authorizeHttp(
  auth: Authenticator,
  db: Kysely<Database>,
  header: string | undefined,
  rule: MethodRule,
  what: string,
  target: { taskId?: string } = {},
): Promise<{ identity: Identity } | { status: number; text: string }> {
  const result = await auth.authenticate(header);
  if ("problem" in result) return { status: 401, text: result.problem };
  try {
    await authorize(db, result.identity, rule, what, target);
  } catch (err) {
    if (err instanceof PermissionDeniedError) return { status: 403, text: `permission denied: ${err.message}` };
    if (err instanceof TaskNotFoundError) return { status: 404, text: err.message };
    throw err;
  }
  return { identity: result.identity };
}
