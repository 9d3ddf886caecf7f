import { useEffect, useState, type FormEvent } from "react";
import { useSearch } from "wouter";
import { useQuery } from "@connectrpc/connect-query";
import { keepPreviousData } from "@tanstack/react-query";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AUDIT_ACTIONS, describeAuditResources } from "../../../src/audit-text.js";
import { AuditService, type AuditEvent } from "../../../src/gen/task/v1/audit_pb.js";
import { formatAbsolute, formatRelative, toDate } from "../format";
import { useNow } from "../hooks/useNow";
import { errorText } from "../services/field-errors";
import { usePermissions } from "../services/permissions";
import { CursorPager } from "../components/CursorPager";
import { useCursorSearch } from "../hooks/useCursorSearch";
import { AUDIT_WINDOWS, auditSearchString, parseAuditSearch, type AuditSince } from "./audit.schema";

const PAGE_SIZE = 50;

/** The audit log: who changed what, newest first, filtered by actor, action and time (admins only). */
export function AuditLog() {
  const { can, who } = usePermissions();
  // Asked only once the role is known, so a token without it sees a sentence, not a refused call.
  if (!who) return <p className="muted">Loading the audit log…</p>;
  if (!can(AuditService, "ListAuditEvents")) {
    return (
      <>
        <h1>Audit log</h1>
        <p className="empty">The audit log needs the admin role.</p>
      </>
    );
  }
  return <AuditList />;
}

function AuditList() {
  const search = parseAuditSearch(useSearch());
  const now = useNow();
  const { go, filter, pager } = useCursorSearch("/audit", search, auditSearchString);

  // The window's start, fixed per filter choice (not per render), so the query key stays put.
  const [sinceAt, setSinceAt] = useState<Date | undefined>();
  useEffect(() => setSinceAt(search.since ? new Date(Date.now() - AUDIT_WINDOWS[search.since]) : undefined), [search.since]);
  const list = useQuery(
    AuditService.method.listAuditEvents,
    {
      actors: search.actor ? [search.actor] : [],
      actions: search.action ? [search.action] : [],
      since: sinceAt && timestampFromDate(sinceAt),
      pageSize: PAGE_SIZE,
      pageToken: search.cursor,
    },
    { placeholderData: keepPreviousData },
  );

  const [actorText, setActorText] = useState(search.actor);
  useEffect(() => setActorText(search.actor), [search.actor]);
  const submitActor = (e: FormEvent) => {
    e.preventDefault();
    filter({ actor: actorText.trim() });
  };
  const filtered = search.actor !== "" || search.action !== "" || search.since !== "";
  const data = list.data;

  return (
    <>
      <h1>Audit log</h1>
      <section className="filters" aria-label="Filters">
        <form className="id-search" role="search" onSubmit={submitActor} noValidate>
          <label htmlFor="audit-actor">Actor</label>
          <div className="inline">
            <input id="audit-actor" type="search" placeholder="ci, local or schedule:nightly" value={actorText} onChange={(e) => setActorText(e.target.value)} />
            <button type="submit">Filter</button>
          </div>
        </form>
        <label className="page-size">
          Action{" "}
          <select value={search.action} onChange={(e) => filter({ action: e.target.value })}>
            <option value="">any</option>
            {AUDIT_ACTIONS.map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </label>
        <fieldset className="time-filter">
          <legend>When</legend>
          <div className="chips">
            {(["", ...Object.keys(AUDIT_WINDOWS)] as AuditSince[]).map((w) => (
              <button key={w || "any"} type="button" className="chip" aria-pressed={search.since === w} onClick={() => filter({ since: w })}>
                {w ? `Last ${w}` : "Any time"}
              </button>
            ))}
          </div>
        </fieldset>
        {filtered && (
          <button type="button" className="link-button" onClick={() => (setActorText(""), go({ actor: "", action: "", since: "", cursor: "" }))}>
            Clear filters
          </button>
        )}
      </section>

      {list.isError && !data && (
        <p className="error-box" role="alert">
          Could not load the audit log: {errorText(list.error)}
        </p>
      )}
      {data &&
        (data.events.length === 0 ? (
          <p className="empty">{filtered ? "No changes match these filters." : "No changes recorded yet."}</p>
        ) : (
          <table className="schedule-table audit-table" aria-busy={list.isPlaceholderData}>
            <caption className="visually-hidden">Changes, newest first</caption>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Actor</th>
                <th scope="col">Action</th>
                <th scope="col">On</th>
                <th scope="col">Reason</th>
                <th scope="col">From</th>
              </tr>
            </thead>
            <tbody>
              {data.events.map((e) => (
                <AuditRow key={e.id.toString()} event={e} now={now} />
              ))}
            </tbody>
          </table>
        ))}
      {data && (
        <CursorPager {...pager(data.nextPageToken)}>
        </CursorPager>
      )}
      {list.isPending && <p className="muted">Loading the audit log…</p>}
    </>
  );
}

function AuditRow({ event: e, now }: { event: AuditEvent; now: number }) {
  const at = toDate(e.at);
  return (
    <tr data-audit-id={e.id.toString()}>
      <td data-label="When">
        {at && (
          <time dateTime={at.toISOString()} title={formatAbsolute(at)}>
            {formatRelative(at, now)}
          </time>
        )}
      </td>
      <td data-label="Actor" data-testid="actor">
        {e.actor}
        {e.role && <span className="muted"> ({e.role})</span>}
      </td>
      <td data-label="Action" data-testid="action">
        <code>{e.action}</code>
      </td>
      <td data-label="On" data-testid="resources" title={JSON.stringify(e.parameters ?? {})}>
        {describeAuditResources(e.resources)}
      </td>
      <td data-label="Reason">{e.reason || <span className="muted">—</span>}</td>
      <td data-label="From" title={[e.userAgent, e.requestId && `request ${e.requestId}`].filter(Boolean).join(" · ") || undefined}>
        {e.clientAddress || <span className="muted">—</span>}
      </td>
    </tr>
  );
}
