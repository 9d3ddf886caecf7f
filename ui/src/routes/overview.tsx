import { Link } from "wouter";
import { useQuery } from "@connectrpc/connect-query";
import { TaskService, TaskStatus } from "../../../src/gen/task/v1/task_pb.js";
import { TaskTable } from "../components/TaskTable";
import { ThroughputChart } from "../components/ThroughputChart";
import { TypeCounts } from "../components/TypeCounts";
import { durationMs, formatDuration, STATUSES, statusName } from "../format";
import { useLiveStatusCounts, useLiveTaskList } from "../hooks/useLiveTasks";
import { useNow } from "../hooks/useNow";
import { useThroughput } from "../hooks/useThroughput";
import { useLiveQueues, useLiveWorkers } from "../hooks/useLiveQueues";
import { errorText } from "../services/field-errors";

/** Counts per status and type, the last hour's throughput, what is running, recent failures, and the task types. */
export function Overview() {
  const now = useNow();
  const counts = useLiveStatusCounts();
  const running = useLiveTaskList({ statuses: [TaskStatus.RUNNING], pageSize: 5 });
  const failed = useLiveTaskList({ statuses: [TaskStatus.FAILED], pageSize: 5 });
  const types = useQuery(TaskService.method.listTaskTypes, {});
  const throughput = useThroughput();
  const queues = useLiveQueues();
  const workers = useLiveWorkers();
  const slots = workers.data?.workers.reduce((n, w) => n + w.slots, 0) ?? 0;
  const busy = workers.data?.workers.reduce((n, w) => n + w.busy, 0) ?? 0;
  const byStatus = new Map(counts.data?.counts.map((c) => [c.status, c.count]));

  return (
    <>
      <h1>Overview</h1>
      <section aria-labelledby="counts-title">
        <h2 id="counts-title" className="visually-hidden">
          Tasks by status
        </h2>
        {counts.isError && !counts.data && (
          <p className="error-box" role="alert">
            Could not load counts: {errorText(counts.error)}
          </p>
        )}
        <ul className="count-cards" data-testid="status-counts">
          <li>
            <Link href="/tasks" className="count-card">
              <span className="count-label">All tasks</span>
              <span className="count-value" data-status="TOTAL">
                {counts.data ? counts.data.total.toLocaleString() : "…"}
              </span>
            </Link>
          </li>
          {STATUSES.map((s) => {
            const name = statusName(s);
            return (
              <li key={s}>
                <Link href={`/tasks?status=${name.toLowerCase()}`} className={`count-card count-${name.toLowerCase()}`}>
                  <span className="count-label">{name}</span>
                  <span className="count-value" data-status={name}>
                    {counts.data ? (byStatus.get(s) ?? 0n).toLocaleString() : "…"}
                  </span>
                </Link>
              </li>
            );
          })}
        </ul>
      </section>

      <div className="two-columns">
        <section aria-labelledby="throughput-title" className="card">
          <h2 id="throughput-title">Last hour</h2>
          {throughput.data ? (
            <ThroughputChart buckets={throughput.data.buckets} />
          ) : throughput.isError ? (
            <p className="error-box" role="alert">
              Could not load throughput: {errorText(throughput.error)}
            </p>
          ) : (
            <p className="muted">…</p>
          )}
        </section>
        <section aria-labelledby="by-type-title" className="card">
          <h2 id="by-type-title">By type</h2>
          {counts.data ? <TypeCounts counts={counts.data.typeCounts} /> : <p className="muted">…</p>}
        </section>
      </div>

      <section aria-labelledby="queues-title" className="card">
        <h2 id="queues-title">
          Queues and workers <Link href="/queues" className="see-all">manage</Link>
        </h2>
        <p data-testid="workers-alive">
          {workers.data
            ? workers.data.workers.length === 0
              ? "No worker is running: tasks wait until one starts (task-cli serve)."
              : `${workers.data.workers.length === 1 ? "1 worker" : `${workers.data.workers.length} workers`} alive, ${busy} of ${slots} slots busy.`
            : "…"}
        </p>
        {queues.data && queues.data.queues.length > 0 && (
          <div className="type-counts-wrap">
            <table className="type-counts" data-testid="queue-summary">
              <thead>
                <tr>
                  <th scope="col">Queue</th>
                  <th scope="col">Running</th>
                  <th scope="col">Waiting</th>
                  <th scope="col">Oldest waiting</th>
                  <th scope="col">Workers</th>
                </tr>
              </thead>
              <tbody>
                {queues.data.queues.map((q) => (
                  <tr key={q.name} data-queue={q.name}>
                    <th scope="row">
                      <Link href={`/tasks?queue=${encodeURIComponent(q.name)}`}>{q.name}</Link>
                      {q.paused && <span className="tag">paused</span>}
                    </th>
                    <td data-label="Running">{q.running.toLocaleString()}</td>
                    <td data-label="Waiting">{q.waiting.toLocaleString()}</td>
                    <td data-label="Oldest waiting">{q.oldestWaitingAge ? formatDuration(durationMs(q.oldestWaitingAge)) : "—"}</td>
                    <td data-label="Workers">{q.workers}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>

      <div className="two-columns">
        <section aria-labelledby="running-title">
          <h2 id="running-title">
            Running now <Link href="/tasks?status=running" className="see-all">see all</Link>
          </h2>
          {running.data?.tasks.length ? <TaskTable tasks={running.data.tasks} now={now} caption="Running tasks" /> : <p className="muted">{running.data ? "Nothing is running." : "…"}</p>}
        </section>
        <section aria-labelledby="failed-title">
          <h2 id="failed-title">
            Recent failures <Link href="/tasks?status=failed" className="see-all">see all</Link>
          </h2>
          {failed.data?.tasks.length ? <TaskTable tasks={failed.data.tasks} now={now} caption="Recently failed tasks" /> : <p className="muted">{failed.data ? "No failed tasks." : "…"}</p>}
        </section>
      </div>

      <section aria-labelledby="types-title">
        <h2 id="types-title">Task types</h2>
        {types.data && (
          <table className="types-table">
            <thead>
              <tr>
                <th scope="col">Type</th>
                <th scope="col">Description</th>
                <th scope="col">Attempts</th>
                <th scope="col">Timeout</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {types.data.types.map((t) => (
                <tr key={t.name}>
                  <td data-label="Type">
                    <Link href={`/tasks?type=${encodeURIComponent(t.name)}`}>{t.name}</Link>
                    {!t.enabled && <span className="tag">disabled</span>}
                  </td>
                  <td data-label="Description">{t.description}</td>
                  <td data-label="Attempts">{t.defaultMaxAttempts}</td>
                  <td data-label="Timeout">{formatDuration(durationMs(t.defaultTimeout))}</td>
                  <td data-label="">
                    {t.enabled && (
                      <Link href={`/tasks/new?type=${encodeURIComponent(t.name)}`} aria-label={`Create a ${t.name} task`}>
                        Create
                      </Link>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </>
  );
}
