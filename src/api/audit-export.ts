import type http from "node:http";
import type http2 from "node:http2";
import { toJsonString } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { Kysely } from "kysely";
import { parseDuration } from "../duration.js";
import { errorMessage, InvalidArgumentError } from "../errors.js";
import { AuditEventSchema } from "../gen/task/v1/audit_pb.js";
import type { Logger } from "../logger.js";
import { eachAuditEvent } from "../store/audit.js";
import type { Database } from "../store/schema.js";
import { auditEventToProto, validateListAuditEvents } from "./audit-service.js";
import { authorizeHttp, type Authenticator } from "./auth.js";
import { write } from "./log-download.js";
import { HTTP_RULES } from "./roles.js";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = Parameters<typeof universalResponseToNodeResponse>[1];

/** The export's path. */
export const AUDIT_EXPORT_PATH = "/audit/export";

/** A `since`/`until` parameter: an RFC 3339 time, or a duration back from now ("1h", "7d"). */
export function parseAuditTime(text: string, field: string, now = Date.now()): Date {
  const ago = parseDuration(text);
  if (ago !== undefined) return new Date(now - ago);
  const at = /^\d{4}-\d\d-\d\dT/.test(text) ? new Date(text) : new Date(Number.NaN);
  if (Number.isNaN(at.getTime())) throw InvalidArgumentError.of(field, `"${text.slice(0, 64)}" is neither a time (2026-01-31T12:00:00Z) nor a duration back from now (1h, 7d)`);
  return at;
}

/**
 * GET /audit/export: the audit log as NDJSON, one AuditEvent (its JSON form, as ListAuditEvents
 * answers) per line, newest first, read a page at a time and written with backpressure, so an
 * export of any size stays in bounded memory. Filters: `actor` and `action` (repeatable), `since`
 * and `until` (a time or a duration back from now). Same auth as the log download, with the role
 * of ListAuditEvents (admin). Returns false for other paths.
 */
export function auditExportHandler(deps: { db: Kysely<Database>; logger: Logger; auth: Authenticator }) {
  return (req: Request, res: Response): boolean => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname !== AUDIT_EXPORT_PATH) return false;
    const reply = (status: number, text: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": "text/plain; charset=utf-8", ...headers });
      res.end(`${text}\n`);
    };
    if (req.method !== "GET") {
      reply(405, "method not allowed: use GET", { allow: "GET" });
      return true;
    }
    authorizeHttp(deps.auth, deps.db, req.headers.authorization, HTTP_RULES.auditExport, "the audit export")
      .then(async (allowed) => {
        if ("status" in allowed) return reply(allowed.status, allowed.text, allowed.status === 401 ? { "www-authenticate": 'Bearer realm="task-service"' } : {});
        let filter;
        try {
          for (const key of url.searchParams.keys()) if (!["actor", "action", "since", "until"].includes(key)) throw InvalidArgumentError.of(key, "is not a parameter (actor, action, since, until)");
          const since = url.searchParams.get("since");
          const until = url.searchParams.get("until");
          filter = validateListAuditEvents({
            actors: url.searchParams.getAll("actor"),
            actions: url.searchParams.getAll("action"),
            since: since ? timestampFromDate(parseAuditTime(since, "since")) : undefined,
            until: until ? timestampFromDate(parseAuditTime(until, "until")) : undefined,
            pageSize: 0,
            pageToken: "",
          });
        } catch (err) {
          return reply(400, `bad request: ${errorMessage(err)}`);
        }
        const closed = new AbortController();
        res.once("close", () => closed.abort());
        res.writeHead(200, { "content-type": "application/x-ndjson; charset=utf-8", "content-disposition": 'attachment; filename="audit.ndjson"', "cache-control": "no-store" });
        for await (const row of eachAuditEvent(deps.db, filter)) {
          if (closed.signal.aborted) return;
          await write(res, `${toJsonString(AuditEventSchema, auditEventToProto(row))}\n`);
        }
        res.end();
      })
      .catch((err: unknown) => {
        deps.logger.warn({ err: errorMessage(err) }, "audit export failed");
        if (!res.headersSent) reply(503, "the audit log could not be read (database unavailable?)");
        else res.destroy();
      });
    return true;
  };
}
