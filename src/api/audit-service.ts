import { create, type JsonObject } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { AuditEventSchema, type AuditEvent, type AuditService, type ListAuditEventsRequest } from "../gen/task/v1/audit_pb.js";
import { listAuditEvents, type AuditEventRow, type AuditFilter } from "../store/audit.js";
import type { Db } from "../store/db.js";
import { Violations } from "./fields.js";

const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 1000;
const PAGE_TOKEN_PREFIX = "a1:";
/** Most actors or actions one request may filter by. */
const MAX_FILTER_VALUES = 100;

/** An audit row as the API message. */
export function auditEventToProto(row: AuditEventRow): AuditEvent {
  return create(AuditEventSchema, {
    id: BigInt(row.id),
    at: timestampFromDate(row.at),
    actor: row.actor,
    role: row.role ?? "",
    action: row.action,
    resources: row.resources as JsonObject,
    parameters: row.parameters as JsonObject,
    reason: row.reason ?? "",
    clientAddress: row.client_address ?? "",
    userAgent: row.user_agent ?? "",
    requestId: row.request_id ?? "",
  });
}

/** Checks a ListAuditEvents request: the filter it names and the page it asks for. */
export function validateListAuditEvents(req: Pick<ListAuditEventsRequest, "actors" | "actions" | "since" | "until" | "pageSize" | "pageToken">): AuditFilter {
  const v = new Violations();
  for (const [field, values] of [["actors", req.actors], ["actions", req.actions]] as const) {
    if (values.length > MAX_FILTER_VALUES) v.add(field, `must name at most ${MAX_FILTER_VALUES} values`);
    values.forEach((value, i) => {
      if (value === "" || value.length > 200) v.add(`${field}[${i}]`, "must be 1-200 characters");
    });
  }
  if (req.pageSize < 0 || req.pageSize > MAX_PAGE_SIZE) v.add("page_size", `must be between 1 and ${MAX_PAGE_SIZE} (0 for ${DEFAULT_PAGE_SIZE})`);
  let beforeId: string | undefined;
  if (req.pageToken !== "") {
    const text = Buffer.from(req.pageToken, "base64url").toString("utf8");
    const id = text.startsWith(PAGE_TOKEN_PREFIX) ? text.slice(PAGE_TOKEN_PREFIX.length) : "";
    if (!/^[1-9]\d{0,18}$/.test(id)) v.add("page_token", "is malformed");
    else beforeId = id;
  }
  v.throwIfAny();
  return {
    actors: req.actors,
    actions: req.actions,
    since: req.since ? timestampDate(req.since) : undefined,
    until: req.until ? timestampDate(req.until) : undefined,
    beforeId,
    limit: req.pageSize || DEFAULT_PAGE_SIZE,
  };
}

/** The AuditService handlers (admin only: roles.ts). Reading the log is not itself audited. */
export function createAuditService({ db }: { db: Db }): ServiceImpl<typeof AuditService> {
  return {
    async listAuditEvents(req) {
      const filter = validateListAuditEvents(req);
      // One extra row tells whether another page exists.
      const rows = await listAuditEvents(db.kysely, { ...filter, limit: filter.limit + 1 });
      const page = rows.slice(0, filter.limit);
      const more = rows.length > filter.limit;
      return {
        events: page.map(auditEventToProto),
        nextPageToken: more ? Buffer.from(`${PAGE_TOKEN_PREFIX}${page.at(-1)!.id}`).toString("base64url") : "",
      };
    },
  };
}
