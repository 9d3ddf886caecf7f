import { timingSafeEqual } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { Health } from "../gen/grpc/health/v1/health_pb.js";

/** Services anyone may call: health checks come from probes and load balancers that hold no token. */
const PUBLIC_SERVICES = new Set([Health.typeName]);

/**
 * Requires `Authorization: Bearer <token>` with one of the configured tokens. Comparison is
 * constant-time so response timing does not reveal how much of a token matched.
 */
export function bearerAuthInterceptor(tokens: string[]): Interceptor {
  const accepted = tokens.map((t) => Buffer.from(t));
  return (next) => async (req) => {
    if (PUBLIC_SERVICES.has(req.service.typeName)) return next(req);
    const header = req.header.get("authorization") ?? "";
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match) throw new ConnectError("missing bearer token", Code.Unauthenticated);
    const presented = Buffer.from(match[1]!.trim());
    const ok = accepted.some((t) => t.length === presented.length && timingSafeEqual(t, presented));
    if (!ok) throw new ConnectError("invalid bearer token", Code.Unauthenticated);
    return next(req);
  };
}
