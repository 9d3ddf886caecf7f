import { randomUUID } from "node:crypto";
import type * as http from "node:http";
import type * as http2 from "node:http2";
import { createContextKey, createContextValues, type ContextValues, type HandlerContext } from "@connectrpc/connect";
import type { AuditActor } from "../store/audit.js";
import { callerOf } from "./identity.js";

/** Where a request came from, for the audit log. */
export interface RequestInfo {
  clientAddress: string | null;
  userAgent: string | null;
  /** The client's `x-request-id`, or one made for the request (and returned in the response's). */
  requestId: string | null;
}

/** The request's origin in the Connect context values; absent (in-memory router tests): all null. */
export const requestInfoKey = createContextKey<RequestInfo>({ clientAddress: null, userAgent: null, requestId: null }, { description: "the request's origin" });

/** The header that carries a request's id, both ways. */
export const REQUEST_ID_HEADER = "x-request-id";

/** Longest request id taken from a client (a longer one is replaced, so a row stays small). */
const MAX_REQUEST_ID = 128;

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;

/**
 * Gives the request an id (the client's `x-request-id` when it sent a usable one) and answers it in
 * the response's `x-request-id` header. Call before the request is handled.
 */
export function assignRequestId(req: NodeRequest, res: http.ServerResponse | http2.Http2ServerResponse): string {
  const sent = req.headers[REQUEST_ID_HEADER];
  const given = Array.isArray(sent) ? sent[0] : sent;
  const id = given && given.length <= MAX_REQUEST_ID && /^[\x21-\x7e]+$/.test(given) ? given : randomUUID();
  req.headers[REQUEST_ID_HEADER] = id;
  res.setHeader(REQUEST_ID_HEADER, id);
  return id;
}

/** The context values connectNodeAdapter starts each call with: the request's origin. */
export function requestContextValues(req: NodeRequest): ContextValues {
  const values = createContextValues();
  const agent = req.headers["user-agent"];
  const id = req.headers[REQUEST_ID_HEADER];
  values.set(requestInfoKey, {
    clientAddress: req.socket?.remoteAddress ?? null,
    userAgent: typeof agent === "string" ? agent.slice(0, 512) : null,
    requestId: typeof id === "string" ? id : null,
  });
  return values;
}

/** The caller of an RPC and the request's origin, as an audit row records them. */
export function auditActorOf(ctx: Pick<HandlerContext, "values">): AuditActor {
  const who = callerOf(ctx);
  const info = ctx.values.get(requestInfoKey);
  return { actor: who.name, role: who.role, ...info };
}
