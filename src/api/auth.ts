import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { Health } from "../gen/grpc/health/v1/health_pb.js";

/** Services anyone may call: health checks come from probes and load balancers that hold no token. */
const PUBLIC_SERVICES = new Set([Health.typeName]);

/** A fixed-length digest, so comparing two of them takes the same time whatever the tokens' lengths. */
function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

/**
 * Requires `Authorization: Bearer <token>` with one of the configured tokens. Tokens are compared
 * as SHA-256 digests in constant time, every configured token each time, so response timing
 * reveals neither how much of a token matched nor how long the tokens are.
 */
export function bearerAuthInterceptor(tokens: string[]): Interceptor {
  const check = bearerTokenCheck(tokens);
  return (next) => async (req) => {
    if (PUBLIC_SERVICES.has(req.service.typeName)) return next(req);
    const problem = check(req.header.get("authorization") ?? "");
    if (problem) throw new ConnectError(problem, Code.Unauthenticated);
    return next(req);
  };
}

/**
 * The same check for plain HTTP routes (the log download): returns what is wrong with an
 * Authorization header ("missing bearer token", "invalid bearer token"), or undefined when it
 * carries one of the tokens.
 */
export function bearerTokenCheck(tokens: string[]): (header: string) => string | undefined {
  const accepted = tokens.map(digest);
  return (header) => {
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match) return "missing bearer token";
    const presented = digest(match[1]!.trim());
    // No short-circuit: which token matched (if any) must not show in the timing either.
    let ok = false;
    for (const t of accepted) ok = timingSafeEqual(t, presented) || ok;
    return ok ? undefined : "invalid bearer token";
  };
}
