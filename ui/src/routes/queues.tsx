import { usePermissions } from "../services/permissions";
import { useState, type FormEvent } from "react";
import { Link } from "wouter";
import { useMutation } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import type { Queue, Worker } from "../../../src/gen/task/v1/queue_pb.js";
import { durationMs, formatAbsolute, formatDuration, formatRelative, toDate } from "../format";
import { KeyUseTable, RateLimitTable } from "../components/LimitTables";
import { invalidateQueues, QueueService, RateLimitService, useLiveKeyUse, useLiveQueues, useLiveRateLimits, useLiveWorkers } from "../hooks/useLiveQueues";
import { useNow } from "../hooks/useNow";
import { errorText } from "../services/field-errors";

/** Queues (pause/resume, concurrency limit, what waits and runs), their limits' use, and the live worker processes. */
export function QueueList() {
  const now = useNow();
  const queues = useLiveQueues();
  const workers = useLiveWorkers();
  const { can } = usePermissions();
  const limits = useLiveRateLimits(can(RateLimitService, "ListRateLimits"));
  // Queues with limits per key (their own, or a rate limit per key): each key's use is shown.
  const keyed = (queues.data?.queues ?? []).filter(
    (q) => q.keyConcurrency !== undefined || Object.keys(q.keyLimits).length > 0 || limits.data?.limits.some((l) => l.perKey && l.queue === q.name),
  );
  return (
    <>
      <h1>Queues and workers</h1>
      <section aria-labelledby="queues-title">
        <h2 id="queues-title">Queues</h2>
        {queues.isError && !queues.data && (
          <p className="error-box" role="alert">
            Could not load queues: {errorText(queues.error)}
          </p>
        )}
        {queues.data &&
          (queues.data.queues.length === 0 ? (
            <p className="empty">No queues yet: a queue appears when a task names it or a worker serves it.</p>
          ) : (
            <QueueTable queues={queues.data.queues} />
          ))}
      </section>
      {limits.data && (
        <section aria-labelledby="limits-title">
          <h2 id="limits-title">Rate limits</h2>
          {limits.data.limits.length === 0 ? (
            <p className="empty">
              No rate limits. <code>task-cli limit set NAME --rate 100/min --burst 20 --queue Q</code> sets one.
            </p>
          ) : (
            <RateLimitTable limits={limits.data.limits} />
          )}
        </section>
      )}
      {keyed.map((q) => (
        <KeyUseSection key={q.name} queue={q.name} />
      ))}
      <section aria-labelledby="workers-title">
        <h2 id="workers-title">Workers</h2>
        {workers.isError && !workers.data && (
          <p className="error-box" role="alert">
            Could not load workers: {errorText(workers.error)}
          </p>
        )}
        {workers.data && <WorkerTable workers={workers.data.workers} now={now} />}
        {workers.data && workers.data.unmatched.length > 0 && (
          <p className="error-box" role="status" data-unmatched-labels>
            Waiting tasks that no live worker or agent has the labels for:{" "}
            {workers.data.unmatched.map((u) => `${pairs(u.labels)} (${u.waiting})`).join("; ")}
          </p>
        )}
      </section>
    </>
  );
}

/** One queue's keys: RUNNING against their limit, waiting, and what holds them. */
function KeyUseSection({ queue }: { queue: string }) {
  const got = useLiveKeyUse(queue);
  const keys = got.data?.queue?.keyUse ?? [];
  const id = `keys-${queue}-title`;
  return (
    <section aria-labelledby={id} data-key-use={queue}>
      <h2 id={id}>Keys of {queue}</h2>
      {got.isError && !got.data && (
        <p className="error-box" role="alert">
          Could not load the keys of {queue}: {errorText(got.error)}
        </p>
      )}
      {got.data && (keys.length === 0 ? <p className="empty">No key has tasks running or waiting.</p> : <KeyUseTable queue={queue} keys={keys} />)}
    </section>
  );
}

/** The queues as a table (cards on a narrow screen). */
export function QueueTable({ queues }: { queues: Queue[] }) {
  return (
    <table className="schedule-table queue-table">
      <caption className="visually-hidden">Queues, by name</caption>
      <thead>
        <tr>
          <th scope="col">Queue</th>
          <th scope="col">Running</th>
          <th scope="col">Waiting</th>
          <th scope="col">Oldest waiting</th>
          <th scope="col">Workers</th>
          <th scope="col">Concurrency</th>
          <th scope="col">Actions</th>
        </tr>
      </thead>
      <tbody>
        {queues.map((q) => (
          <QueueRow key={q.name} queue={q} />
        ))}
      </tbody>
    </table>
  );
}

function QueueRow({ queue }: { queue: Queue }) {
  const queryClient = useQueryClient();
  const [problem, setProblem] = useState("");
  const done = () => (setProblem(""), invalidateQueues(queryClient));
  const pause = useMutation(QueueService.method.pauseQueue, { onSuccess: done, onError: (e) => setProblem(`Pause failed: ${errorText(e)}`) });
  const resume = useMutation(QueueService.method.resumeQueue, { onSuccess: done, onError: (e) => setProblem(`Resume failed: ${errorText(e)}`) });
  const busy = pause.isPending || resume.isPending;
  const { can } = usePermissions();
  return (
    <tr data-queue={queue.name}>
      <td data-label="Queue" className="name-cell">
        <Link href={`/tasks?queue=${encodeURIComponent(queue.name)}`} title="The tasks in this queue">
          {queue.name}
        </Link>
        {queue.paused && (
          <span className="tag" data-testid="paused">
            paused
          </span>
        )}
      </td>
      <td data-label="Running" data-testid="running">
        {queue.running.toLocaleString()}
      </td>
      <td data-label="Waiting" data-testid="waiting">
        {queue.waiting.toLocaleString()}
      </td>
      <td data-label="Oldest waiting">{queue.oldestWaitingAge ? formatDuration(durationMs(queue.oldestWaitingAge)) : "—"}</td>
      <td data-label="Workers">{queue.workers === 0 ? <span className="tag">none</span> : queue.workers}</td>
      <td data-label="Concurrency">
        {can(QueueService, "UpdateQueue") ? <ConcurrencyForm queue={queue} onProblem={setProblem} /> : <span data-testid="limit">{queue.concurrency ?? "unlimited"}</span>}
      </td>
      <td data-label="Actions">
        <div className="task-actions schedule-actions">
          {queue.paused
            ? can(QueueService, "ResumeQueue") && (
                <button type="button" className="primary" disabled={busy} onClick={() => resume.mutate({ name: queue.name })}>
                  {resume.isPending ? "Resuming…" : "Resume"}
                </button>
              )
            : can(QueueService, "PauseQueue") && (
                <button type="button" disabled={busy} onClick={() => pause.mutate({ name: queue.name })}>
                  {pause.isPending ? "Pausing…" : "Pause"}
                </button>
              )}
        </div>
        {problem && (
          <p className="field-error" role="alert">
            {problem}
          </p>
        )}
      </td>
    </tr>
  );
}

/** The queue's concurrency limit: a number, or empty for unlimited; saved with UpdateQueue. */
function ConcurrencyForm({ queue, onProblem }: { queue: Queue; onProblem(text: string): void }) {
  const queryClient = useQueryClient();
  const current = queue.concurrency === undefined ? "" : String(queue.concurrency);
  const [text, setText] = useState(current);
  const [invalid, setInvalid] = useState(false);
  const update = useMutation(QueueService.method.updateQueue, {
    onSuccess: () => (onProblem(""), invalidateQueues(queryClient)),
    onError: (e) => onProblem(`Saving the limit failed: ${errorText(e)}`),
  });
  function submit(e: FormEvent) {
    e.preventDefault();
    const t = text.trim();
    if (t !== "" && !/^\d{1,6}$/.test(t)) {
      setInvalid(true);
      onProblem("The limit is a whole number, 0 or more; empty for unlimited.");
      return;
    }
    setInvalid(false);
    update.mutate({ name: queue.name, settings: { concurrency: t === "" ? undefined : Number(t) }, updateMask: { paths: ["concurrency"] } });
  }
  return (
    <form className="inline concurrency-form" onSubmit={submit} noValidate>
      <input
        aria-label={`Concurrency limit of ${queue.name}`}
        inputMode="numeric"
        placeholder="unlimited"
        size={8}
        value={text}
        aria-invalid={invalid || undefined}
        onChange={(e) => setText(e.target.value)}
      />
      <button type="submit" disabled={update.isPending || text.trim() === current}>
        {update.isPending ? "Saving…" : "Set"}
      </button>
    </form>
  );
}

/** Labels as the CLI writes them: k=v pairs, comma-separated. */
const pairs = (labels: Record<string, string>) =>
  Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");

/** The live worker processes and remote agents: where they run (an agent: its address and replica), how busy, what they serve. */
export function WorkerTable({ workers, now }: { workers: Worker[]; now: number }) {
  if (workers.length === 0) return <p className="empty">No worker is running. Start one with <code>task-cli serve</code>.</p>;
  return (
    <table className="schedule-table worker-table">
      <caption className="visually-hidden">Live workers</caption>
      <thead>
        <tr>
          <th scope="col">Worker</th>
          <th scope="col">Busy</th>
          <th scope="col">Labels</th>
          <th scope="col">Queues</th>
          <th scope="col">Types</th>
          <th scope="col">Started</th>
          <th scope="col">Heartbeat</th>
        </tr>
      </thead>
      <tbody>
        {workers.map((w) => {
          const started = toDate(w.startedAt);
          const beat = toDate(w.lastHeartbeatAt);
          return (
            <tr key={w.id} data-worker={w.id}>
              <td data-label="Worker" className="name-cell">
                {w.agentName ? (
                  // A remote agent: where its stream comes from and which replica holds it.
                  <>
                    <code>{w.agentName}</code> agent{w.version ? ` ${w.version}` : ""} <span className="tag">from {w.address || "?"} via {w.replica || "?"}</span>
                  </>
                ) : (
                  <>
                    <code>{w.host}</code> pid {w.pid}
                  </>
                )}
              </td>
              <td data-label="Busy">
                {w.busy} of {w.slots}
              </td>
              <td data-label="Labels">{Object.keys(w.labels).length ? <code>{pairs(w.labels)}</code> : "—"}</td>
              <td data-label="Queues">{w.queues.length ? w.queues.join(", ") : "all"}</td>
              <td data-label="Types">{w.types.join(", ")}</td>
              <td data-label="Started">{started ? <time dateTime={started.toISOString()} title={formatAbsolute(started)}>{formatRelative(started, now)}</time> : "—"}</td>
              <td data-label="Heartbeat">{beat ? <time dateTime={beat.toISOString()} title={formatAbsolute(beat)}>{formatRelative(beat, now)}</time> : "—"}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
