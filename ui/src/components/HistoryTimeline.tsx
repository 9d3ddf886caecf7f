import type { TaskHistoryEntry } from "../../../src/gen/task/v1/task_pb.js";
import { formatAbsolute, formatRelative, statusName, toDate } from "../format";
import { StatusBadge } from "./StatusBadge";

/** A task's state changes, oldest first, grouped visually by attempt. */
export function HistoryTimeline({ history, now }: { history: TaskHistoryEntry[]; now: number }) {
  if (history.length === 0) return <p className="muted">No history yet.</p>;
  return (
    <ol className="timeline" aria-label="History">
      {history.map((h) => {
        const at = toDate(h.createdAt);
        return (
          <li key={h.id.toString()} className={`timeline-item timeline-${statusName(h.status).toLowerCase()}`}>
            <div className="timeline-head">
              <StatusBadge status={h.status} />
              {h.attempt > 0 && <span className="muted">attempt {h.attempt}</span>}
              {at && (
                <time dateTime={at.toISOString()} title={formatAbsolute(at)} className="muted">
                  {formatRelative(at, now)}
                </time>
              )}
            </div>
            {h.details && <div className="timeline-details">{h.details}</div>}
          </li>
        );
      })}
    </ol>
  );
}
