import { AUDIT_ACTIONS } from "../../../src/audit-text.js";

/** The Audit view's state, all of it in the URL so a view can be shared and survives reload. */
export interface AuditSearch {
  /** Only changes by this actor (a token's name, local, schedule:<name>); "" for any. */
  actor: string;
  /** Only this action; "" for any. */
  action: string;
  /** Only changes in the last … ("" for any time). */
  since: AuditSince;
  /** The page token of the page shown ("" for the newest page). */
  cursor: string;
}

/** The time windows offered, as durations back from now. */
export const AUDIT_WINDOWS = { "1h": 3_600_000, "24h": 86_400_000, "7d": 7 * 86_400_000, "30d": 30 * 86_400_000 } as const;
export type AuditSince = keyof typeof AUDIT_WINDOWS | "";

/** Reads the view from a query string; values that make no sense are dropped, not errors. */
export function parseAuditSearch(search: string): AuditSearch {
  const params = new URLSearchParams(search);
  const action = params.get("action") ?? "";
  const since = params.get("since") ?? "";
  return {
    actor: (params.get("actor") ?? "").trim().slice(0, 200),
    action: (AUDIT_ACTIONS as readonly string[]).includes(action) ? action : "",
    since: since in AUDIT_WINDOWS ? (since as AuditSince) : "",
    cursor: params.get("cursor") ?? "",
  };
}

/** The query string for a view, defaults left out, in a stable order. */
export function auditSearchString(s: AuditSearch): string {
  const params = new URLSearchParams();
  if (s.actor) params.set("actor", s.actor);
  if (s.action) params.set("action", s.action);
  if (s.since) params.set("since", s.since);
  if (s.cursor) params.set("cursor", s.cursor);
  return params.toString().replaceAll("%3A", ":");
}
