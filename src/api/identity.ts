import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { ApiRole } from "../store/schema.js";

/**
 * Who made a request: the token's name and role, or `local` (admin) for a caller without a token
 * on a server that runs without tokens (loopback only, or --insecure). Handlers read it from the
 * Connect context (`callerOf(ctx)`); the audit log records it.
 */
export interface Identity {
  /** The token's name (`ci`, or `config-1` for an unnamed TASK_API_TOKENS entry); "local" without a token. */
  name: string;
  role: ApiRole;
  /** No token was presented to a server without tokens. */
  local: boolean;
  /** Where the token is defined: a stored token (`task-cli token create`), TASK_API_TOKENS, or none. */
  source: "database" | "config" | "local";
  /** The queues it may see and touch; empty: every queue. */
  queues: string[];
  /** The task types it may see and touch; empty: every type. */
  types: string[];
  /** An agent token's labels (sorted "key=value" pairs): its agents may have these or fewer; absent or empty: any. */
  labels?: string[];
}

/** The caller of a server without tokens (loopback only, or --insecure). */
export const LOCAL_IDENTITY: Identity = Object.freeze({ name: "local", role: "admin", local: true, source: "local", queues: [], types: [] });

/**
 * The request's identity in the Connect context values, set by the auth interceptor (auth.ts) on
 * every call that reaches a handler. Its default (local) is what handlers see when called without
 * the server's interceptors, as the in-memory router tests do.
 */
export const identityKey = createContextKey<Identity>(LOCAL_IDENTITY, { description: "the caller's token and role" });

/** The caller of an RPC. */
export function callerOf(ctx: Pick<HandlerContext, "values">): Identity {
  return ctx.values.get(identityKey);
}
