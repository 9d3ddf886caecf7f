import { Link } from "wouter";
import type { Task } from "../../../src/gen/task/v1/task_pb.js";
import { formatAbsolute, formatRelative, toDate } from "../format";
import { StatusBadge } from "./StatusBadge";

function When({ date, now }: { date: Date | undefined; now: number }) {
  if (!date) return <span className="muted">—</span>;
  return (
    <time dateTime={date.toISOString()} title={formatAbsolute(date)}>
      {formatRelative(date, now)}
    </time>
  );
}

/** Tasks as a table (cards on a narrow screen); each row links to the task. */
export function TaskTable({ tasks, now, caption, stale = false }: { tasks: Task[]; now: number; caption: string; stale?: boolean }) {
  // stale: these rows answer the previous filter while the new one loads; they are dimmed and marked busy.
  return (
    <table className={`task-table${stale ? " stale" : ""}`} aria-busy={stale || undefined}>
      <caption className="visually-hidden">{caption}</caption>
      <thead>
        <tr>
          <th scope="col">ID</th>
          <th scope="col">Name</th>
          <th scope="col">Type</th>
          <th scope="col">Status</th>
          <th scope="col">Attempts</th>
          <th scope="col">Created</th>
          <th scope="col">Updated</th>
        </tr>
      </thead>
      <tbody>
        {tasks.map((t) => (
          <tr key={t.id.toString()} data-task-id={t.id.toString()}>
            <td data-label="ID">
              <Link href={`/tasks/${t.id}`}>#{t.id.toString()}</Link>
            </td>
            <td data-label="Name" className="name-cell">
              <Link href={`/tasks/${t.id}`} tabIndex={-1}>
                {t.name}
              </Link>
            </td>
            <td data-label="Type">{t.type}</td>
            <td data-label="Status">
              <StatusBadge status={t.status} />
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
