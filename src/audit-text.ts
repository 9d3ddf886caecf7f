/**
 * How the audit log reads to people, shared by `task-cli audit` and the dashboard's Audit view (which
 * imports this module: it must stay free of Node imports).
 */

/** The actions audit rows name (src/store/audit.ts writes them), for filters. */
export const AUDIT_ACTIONS = [
  "create",
  "create_batch",
  "cancel",
  "retry",
  "pause",
  "resume",
  "delete",
  "bulk_cancel",
  "bulk_retry",
  "bulk_pause",
  "bulk_resume",
  "bulk_delete",
  "queue_update",
  "queue_pause",
  "queue_resume",
  "schedule_create",
  "schedule_update",
  "schedule_pause",
  "schedule_resume",
  "schedule_trigger",
  "schedule_delete",
  "token_create",
  "token_revoke",
  "retention_run",
] as const;

/** The counts a bulk action or retention run records, in the order they are shown. */
const COUNTS = ["matched", "eligible", "changed", "succeeded", "failed", "cancelled", "auditEvents"];

/** What an event acted on, in a few words: "task 12", "3 tasks", "queue reports", a bulk's filter and counts. */
export function describeAuditResources(resources: Record<string, unknown> | undefined): string {
  const r = resources ?? {};
  const parts: string[] = [];
  if (Array.isArray(r.tasks)) parts.push(r.tasks.length <= 5 ? `task${r.tasks.length === 1 ? "" : "s"} ${r.tasks.join(", ")}` : `${r.tasks.length} tasks`);
  for (const key of ["queue", "schedule", "token"]) if (typeof r[key] === "string") parts.push(`${key} ${r[key] as string}`);
  if (r.filter !== undefined) parts.push(`filter ${JSON.stringify(r.filter)}`);
  for (const key of COUNTS) if (typeof r[key] === "number") parts.push(`${key} ${r[key] as number}`);
  return parts.join("; ") || "-";
}
