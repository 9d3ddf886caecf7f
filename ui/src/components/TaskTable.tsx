import { Link } from "wouter";
import { TaskStatus, type Task } from "../../../src/gen/task/v1/task_pb.js";
import { formatAbsolute, formatRelative, toDate } from "../format";
import { ProgressBar } from "./ProgressBar";
import { StatusBadge } from "./StatusBadge";

function When({ date, now }: { date: Date | undefined; now: number }) {
  if (!date) return <span className="muted">—</span>;
  return (
    <time dateTime={date.toISOString()} title={formatAbsolute(date)}>
      {formatRelative(date, now)}
    </time>
  );
}

/** Row selection: which task ids are ticked, and how ticking changes them. */
export interface RowSelection {
  selected: ReadonlySet<bigint>;
  /** Ticks (on) or unticks these ids. */
  onChange(ids: bigint[], on: boolean): void;
}

/** The page's select-all box: ticked when every row is, mixed when some are. */
function SelectPage({ tasks, selection }: { tasks: Task[]; selection: RowSelection }) {
  const ticked = tasks.filter((t) => selection.selected.has(t.id)).length;
  return (
    <input
      type="checkbox"
      aria-label="Select every task on this page"
      checked={ticked > 0 && ticked === tasks.length}
      ref={(el) => {
        if (el) el.indeterminate = ticked > 0 && ticked < tasks.length;
      }}
      onChange={(e) => selection.onChange(tasks.map((t) => t.id), e.target.checked)}
    />
  );
}

/** Tasks as a table (cards on a narrow screen); each row links to the task; with `selection`, rows can be ticked. */
export function TaskTable({ tasks, now, caption, stale = false, selection }: { tasks: Task[]; now: number; caption: string; stale?: boolean; selection?: RowSelection }) {
  // stale: these rows answer the previous filter while the new one loads; they are dimmed and marked busy.
  return (
    <table className={`task-table${stale ? " stale" : ""}`} aria-busy={stale || undefined}>
      <caption className="visually-hidden">{caption}</caption>
      <thead>
        <tr>
          {selection && (
            <th scope="col" className="select-cell">
              <SelectPage tasks={tasks} selection={selection} />
            </th>
          )}
          <th scope="col">ID</th>
          <th scope="col">Name</th>
          <th scope="col">Type</th>
          <th scope="col">Queue</th>
          <th scope="col">Status</th>
          <th scope="col">Attempts</th>
          <th scope="col">Created</th>
          <th scope="col">Updated</th>
        </tr>
      </thead>
      <tbody>
        {tasks.map((t) => (
          <tr key={t.id.toString()} data-task-id={t.id.toString()} aria-selected={selection ? selection.selected.has(t.id) : undefined}>
            {selection && (
              <td className="select-cell" data-label="Select">
                <input type="checkbox" aria-label={`Select task #${t.id}`} checked={selection.selected.has(t.id)} onChange={(e) => selection.onChange([t.id], e.target.checked)} />
              </td>
            )}
            <td data-label="ID">
              <Link href={`/tasks/${t.id}`}>#{t.id.toString()}</Link>
            </td>
            <td data-label="Name" className="name-cell">
              <Link href={`/tasks/${t.id}`} tabIndex={-1}>
                {t.name}
              </Link>
            </td>
            <td data-label="Type">{t.type}</td>
            <td data-label="Queue">{t.queue || "default"}</td>
            <td data-label="Status">
              <StatusBadge status={t.status} />
              {t.progress && (t.status === TaskStatus.RUNNING || t.status === TaskStatus.PAUSED) && <ProgressBar progress={t.progress} />}
            </td>
            <td data-label="Attempts">
              {t.attempts}/{t.maxAttempts}
            </td>
            <td data-label="Created">
              <When date={toDate(t.createdAt)} now={now} />
            </td>
            <td data-label="Updated">
              <When date={toDate(t.updatedAt)} now={now} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
