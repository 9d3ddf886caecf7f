import { timingSafeEqual } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/**
 * Requires `Authorization: Bearer <token>` with one of the configured tokens. Comparison is
 * constant-time so response timing does not reveal how much of a token matched.
 */
export function bearerAuthInterceptor(tokens: string[]): Interceptor {
  const accepted = tokens.map((t) => Buffer.from(t));
  return (next) => async (req) => {
    const header = req.header.get("authorization") ?? "";
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match) throw new ConnectError("missing bearer token", Code.Unauthenticated);
    const presented = Buffer.from(match[1]!.trim());
    const ok = accepted.some((t) => t.length === presented.length && timingSafeEqual(t, presented));
    if (!ok) throw new ConnectError("invalid bearer token", Code.Unauthenticated);
    return next(req);
  };
}
