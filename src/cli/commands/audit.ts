import { Command } from "commander";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ListAuditEventsResponseSchema } from "../../gen/task/v1/audit_pb.js";
import { describeAuditResources } from "../../audit-text.js";
import { auditClient, type ClientOptions } from "../client.js";
import { openDownload } from "../../sdk/files.js";
import type { CliIO } from "../io.js";
import { UsageError } from "../io.js";
import { makeTable, printMessage } from "../output.js";
import { parseDuration } from "../../duration.js";
import { parseInteger } from "../parse.js";
import type { GlobalOptions } from "../program.js";

/** `--since`/`--until`: a duration back from now (1h, 7d) or an RFC 3339 time. */
function parseTimeFlag(value: string, flag: string): Date {
  const ago = parseDuration(value);
  if (ago !== undefined) return new Date(Date.now() - ago);
  const at = /^\d{4}-\d\d-\d\dT/.test(value) ? new Date(value) : new Date(Number.NaN);
  if (Number.isNaN(at.getTime())) throw new UsageError(`${flag}: "${value}" is neither a duration back from now (1h, 7d) nor a time (2026-01-31T12:00:00Z)`);
  return at;
}

const repeat = (value: string, previous: string[] = []) => [...previous, ...value.split(",").map((s) => s.trim()).filter(Boolean)];

/** Streams GET /audit/export to stdout as it arrives (NDJSON). */
async function exportAudit(io: CliIO, g: ClientOptions, query: URLSearchParams): Promise<void> {
  const res = await openDownload(g, `audit/export?${query.toString()}`);
  if (res.statusCode !== 200) {
    let body = "";
    for await (const chunk of res) body += String(chunk);
    throw new Error(`the audit export failed: ${res.statusCode} ${body.trim()}`);
  }
  const decoder = new TextDecoder();
  for await (const chunk of res as AsyncIterable<Uint8Array>) io.stdout.write(decoder.decode(chunk, { stream: true }));
  const rest = decoder.decode();
  if (rest) io.stdout.write(rest);
}

/** Registers `audit`: the audit log, listed or exported as NDJSON (needs an admin token). */
export function registerAuditCommand(program: Command, io: CliIO): void {
  program
    .command("audit")
    .description("Show who changed what (the audit log), newest first; needs an admin token")
    .option("--actor <name>", "only changes by this token (or local, schedule:<name>); repeatable or comma-separated", repeat)
    .option("--action <action>", "only these actions (create, cancel, bulk_cancel, queue_update, token_create, ...); repeatable", repeat)
    .option("--since <when>", "only changes since then: a duration back from now (1h, 7d) or a time")
    .option("--until <when>", "only changes before then: a duration back from now or a time")
    .option("--limit <n>", "events per page (1-1000)", "50")
    .option("--page-token <token>", "the page after the one that printed this token")
    .option("--export", "write every matching event as NDJSON (one JSON object a line), streamed, e.g. > audit.ndjson")
    .action(async (flags: { actor?: string[]; action?: string[]; since?: string; until?: string; limit: string; pageToken?: string; export?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const since = flags.since === undefined ? undefined : parseTimeFlag(flags.since, "--since");
      const until = flags.until === undefined ? undefined : parseTimeFlag(flags.until, "--until");
      if (flags.export) {
        const query = new URLSearchParams();
        for (const a of flags.actor ?? []) query.append("actor", a);
        for (const a of flags.action ?? []) query.append("action", a);
        if (since) query.set("since", since.toISOString());
        if (until) query.set("until", until.toISOString());
        return exportAudit(io, g, query);
      }
      const res = await auditClient(g).listAuditEvents({
        actors: flags.actor ?? [],
        actions: flags.action ?? [],
        since: since && timestampFromDate(since),
        until: until && timestampFromDate(until),
        pageSize: parseInteger(flags.limit, "--limit", 1, 1000),
        pageToken: flags.pageToken ?? "",
      });
      printMessage(io, g.output, ListAuditEventsResponseSchema, res, (r) => {
        if (r.events.length === 0) return "no audit events";
        const table = makeTable(["AT", "ACTOR", "ROLE", "ACTION", "ON", "REASON", "FROM", "REQUEST"]);
        for (const e of r.events) {
          table.push([e.at ? timestampDate(e.at).toISOString() : "-", e.actor, e.role || "-", e.action, describeAuditResources(e.resources), e.reason || "-", e.clientAddress || "-", e.requestId || "-"]);
        }
        return `${table.toString()}${r.nextPageToken ? `\n\nmore: --page-token ${r.nextPageToken}` : ""}`;
      });
    });
}
