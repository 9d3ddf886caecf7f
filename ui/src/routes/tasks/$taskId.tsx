import { usePermissions } from "../../services/permissions";
import { useEffect, useState, type ReactNode } from "react";
import { Link } from "wouter";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { Code, ConnectError } from "@connectrpc/connect";
import { TaskControlService } from "../../../../src/gen/task/v1/control_pb.js";
import { TaskService, TaskStatus, type Task, type TaskFile } from "../../../../src/gen/task/v1/task_pb.js";
import { HistoryTimeline } from "../../components/HistoryTimeline";
import { JsonView } from "../../components/JsonView";
import { LogRange } from "../../components/LogRange";
import { LogTail } from "../../components/LogTail";
import { ProgressBar } from "../../components/ProgressBar";
import { StatusBadge } from "../../components/StatusBadge";
import { TaskFiles } from "../../components/TaskFiles";
import { canCancel, canPause, canRetry, durationMs, formatAbsolute, formatDuration, formatRelative, isTerminal, toDate } from "../../format";
import { useNow } from "../../hooks/useNow";
import { useWatchTask } from "../../hooks/useWatchTask";
import { errorText } from "../../services/field-errors";
import { invalidateTaskLists } from "../../services/task-keys";
import { formatLabels } from "../../../../src/labels.js";
import { downloadTaskLog } from "../../services/task-log";
import { downloadTaskFile } from "../../services/task-files";

function When({ date, now }: { date: Date | undefined; now: number }) {
  if (!date) return <>—</>;
  return (
    <time dateTime={date.toISOString()} title={formatAbsolute(date)}>
      {formatAbsolute(date)} <span className="muted relative-time">({formatRelative(date, now)})</span>
    </time>
  );
}

function Item({ term, children }: { term: string; children: ReactNode }) {
  return (
    <div>
      <dt>{term}</dt>
      <dd>{children}</dd>
    </div>
  );
}

/** One task: its state, parameters and result, history, live output, and actions. */
export function TaskDetail({ idText }: { idText: string }) {
  if (!/^[1-9]\d{0,18}$/.test(idText)) {
    return (
      <>
        <h1>Not a task id</h1>
        <p>
          “{idText}” is not a task id. <Link href="/tasks">Back to tasks</Link>
        </p>
      </>
    );
  }
  return <WatchedTaskDetail key={idText} id={BigInt(idText)} />;
}

function WatchedTaskDetail({ id }: { id: bigint }) {
  // A retried task runs again: a new generation reopens the stream, which ends at a finished task.
  const [generation, setGeneration] = useState(0);
  const watched = useWatchTask(id, generation);
  const now = useNow(5_000);
  const task = watched.task;

  if (watched.state === "failed") {
    const notFound = watched.error instanceof ConnectError && watched.error.code === Code.NotFound;
    return (
      <>
        <h1>{notFound ? `Task #${id} not found` : `Task #${id}`}</h1>
        <p className="error-box" role="alert">
          {notFound ? "There is no task with this id." : `Could not load the task: ${errorText(watched.error)}`}
        </p>
        <p>
          <Link href="/tasks">Back to tasks</Link>
        </p>
      </>
    );
  }
  if (!task) return <p className="muted">Loading task #{id.toString()}…</p>;

  const live = watched.state === "live" && !isTerminal(task.status);
  return (
    <>
      <p className="breadcrumb">
        <Link href="/tasks">Tasks</Link> / #{task.id.toString()}
      </p>
      <div className="page-title detail-title">
        <h1>
          {task.name} <span className="muted">#{task.id.toString()}</span>
        </h1>
        <span data-testid="task-status" className="big-status">
          <StatusBadge status={task.status} />
        </span>
      </div>
      <TaskActions task={task} onRetried={() => setGeneration((g) => g + 1)} />

      <section aria-labelledby="summary-title" className="card">
        <h2 id="summary-title" className="visually-hidden">
          Summary
        </h2>
        {task.progress && (
          <ProgressBar progress={task.progress} detailed />
        )}
        <dl className="summary">
          <Item term="Type">{task.type}</Item>
          <Item term="Attempts">
            {task.attempts} of {task.maxAttempts}
          </Item>
          <Item term="Priority">{task.priority}</Item>
          <Item term="Timeout">{formatDuration(durationMs(task.timeout))}</Item>
          <Item term="Created">
            <When date={toDate(task.createdAt)} now={now} />
          </Item>
          <Item term="Run at">
            <When date={toDate(task.runAt)} now={now} />
          </Item>
          <Item term="Started">
            <When date={toDate(task.startedAt)} now={now} />
          </Item>
          <Item term="Finished">
            <When date={toDate(task.finishedAt)} now={now} />
          </Item>
          {task.idempotencyKey && (
            <Item term="Idempotency key">
              <code>{task.idempotencyKey}</code>
            </Item>
          )}
          {task.key && (
            <Item term="Key">
              <code>{task.key}</code>
            </Item>
          )}
          {Object.keys(task.labels).length > 0 && (
            <Item term="Runs on">
              workers with labels <code>{formatLabels(task.labels)}</code>
            </Item>
          )}
          {task.waitReason && <Item term="Waiting for">{task.waitReason}</Item>}
        </dl>
      </section>

      {task.lastError && (
        <section aria-labelledby="error-title" className="card card-error">
          <h2 id="error-title">Last error</h2>
          <pre className="last-error" data-testid="last-error">
            {task.lastError}
          </pre>
        </section>
      )}

      <div className="detail-grid">
        <section aria-labelledby="output-title" className="card">
          <h2 id="output-title">Output</h2>
          <OutputPanel id={task.id} watchedLines={watched.logs} lastSeq={watched.lastSeq} live={live} />
        </section>

        <section aria-labelledby="history-title" className="card">
          <h2 id="history-title">History</h2>
          <HistoryTimeline history={watched.history} now={now} />
        </section>
      </div>

      <section aria-labelledby="files-title" className="card">
        <h2 id="files-title">Files</h2>
        <FilesPanel id={task.id} status={task.status} attempts={task.attempts} />
      </section>

      <div className="two-columns">
        <section aria-labelledby="params-title" className="card">
          <h2 id="params-title">Parameters</h2>
          <JsonView value={task.parameters} label="Parameters" />
        </section>
        <section aria-labelledby="result-title" className="card">
          <h2 id="result-title">Result</h2>
          <JsonView value={task.result} label="Result" />
        </section>
      </div>

    </>
  );
}

function OutputPanel({ id, watchedLines, lastSeq, live }: { id: bigint; watchedLines: ReturnType<typeof useWatchTask>["logs"]; lastSeq: number; live: boolean }) {
  const [downloading, setDownloading] = useState(false);
  const [problem, setProblem] = useState("");
  async function download() {
    setDownloading(true);
    setProblem("");
    try {
      await downloadTaskLog(id);
    } catch (err) {
      setProblem(`Download failed: ${errorText(err)}`);
    } finally {
      setDownloading(false);
    }
  }
  return (
    <>
      <LogTail lines={watchedLines} lastSeq={lastSeq} live={live} onDownload={download} downloading={downloading} />
      <LogRange id={id} lastSeq={lastSeq} />
      {problem && (
        <p className="field-error" role="alert">
          {problem}
        </p>
      )}
    </>
  );
}

/** The task's input and output files (ListTaskFiles), read again when its status or attempt changes (outputs arrive with a success). */
function FilesPanel({ id, status, attempts }: { id: bigint; status: TaskStatus; attempts: number }) {
  const files = useQuery(TaskService.method.listTaskFiles, { id });
  const { refetch } = files;
  useEffect(() => {
    void refetch();
  }, [status, attempts, refetch]);
  const [downloading, setDownloading] = useState("");
  const [problem, setProblem] = useState("");
  async function download(file: TaskFile) {
    setDownloading(`${file.direction}:${file.attempt}:${file.name}`);
    setProblem("");
    try {
      await downloadTaskFile(file.downloadPath, file.name);
    } catch (err) {
      setProblem(`Download failed: ${errorText(err)}`);
    } finally {
      setDownloading("");
    }
  }
  if (files.isError) return <p className="field-error" role="alert">Could not list the files: {errorText(files.error)}</p>;
  if (!files.data) return <p className="muted">Loading…</p>;
  return (
    <>
      <TaskFiles files={files.data.files} onDownload={(f) => void download(f)} downloading={downloading} />
      {problem && (
        <p className="field-error" role="alert">
          {problem}
        </p>
      )}
    </>
  );
}

/** Cancel (with a confirmation), pause, resume, retry and clone, as the task's status allows. */
function TaskActions({ task, onRetried }: { task: Task; onRetried: () => void }) {
  const queryClient = useQueryClient();
  const [confirming, setConfirming] = useState(false);
  const [problem, setProblem] = useState("");
  const done = () => invalidateTaskLists(queryClient);
  const cancel = useMutation(TaskService.method.cancelTask, {
    onSuccess: () => (setConfirming(false), done()),
    onError: (err) => setProblem(`Cancel failed: ${errorText(err)}`),
  });
  const retry = useMutation(TaskService.method.retryTask, {
    onSuccess: () => (onRetried(), done()),
    onError: (err) => setProblem(`Retry failed: ${errorText(err)}`),
  });
  // The page's WatchTask stream shows the new status; the lists and counts are re-read.
  const pause = useMutation(TaskControlService.method.pauseTask, { onSuccess: done, onError: (err) => setProblem(`Pause failed: ${errorText(err)}`) });
  const resume = useMutation(TaskControlService.method.resumeTask, { onSuccess: done, onError: (err) => setProblem(`Resume failed: ${errorText(err)}`) });

  // Only what the token may do; a shell task also needs the server's shell role to retry or clone.
  const { can, who } = usePermissions();
  const shellOk = task.type !== "shell" || who?.shellAllowed === true;
  return (
    <div className="task-actions">
      {can(TaskService, "CancelTask") && canCancel(task.status) &&
        (confirming ? (
          // Focus starts on the safe choice; Escape backs out.
          <span className="confirm" role="group" aria-label="Confirm cancel" onKeyDown={(e) => e.key === "Escape" && setConfirming(false)}>
            <span>Cancel this task?</span>
            <button type="button" className="danger" disabled={cancel.isPending} onClick={() => (setProblem(""), cancel.mutate({ id: task.id, reason: "cancelled from the dashboard" }))}>
              {cancel.isPending ? "Cancelling…" : "Yes, cancel it"}
            </button>
            <button type="button" autoFocus onClick={() => setConfirming(false)}>
              Keep it
            </button>
          </span>
        ) : (
          <button type="button" className="danger" onClick={() => setConfirming(true)}>
            Cancel
          </button>
        ))}
      {can(TaskControlService, "PauseTask") && canPause(task.status) && (
        <button type="button" disabled={pause.isPending} onClick={() => (setProblem(""), pause.mutate({ id: task.id }))}>
          {pause.isPending ? "Pausing…" : "Pause"}
        </button>
      )}
      {can(TaskControlService, "ResumeTask") && task.status === TaskStatus.PAUSED && (
        <button type="button" className="primary" disabled={resume.isPending} onClick={() => (setProblem(""), resume.mutate({ id: task.id }))}>
          {resume.isPending ? "Resuming…" : "Resume"}
        </button>
      )}
      {can(TaskService, "RetryTask") && shellOk && canRetry(task.status) && (
        <button type="button" className="primary" disabled={retry.isPending} onClick={() => (setProblem(""), retry.mutate({ id: task.id }))}>
          {retry.isPending ? "Retrying…" : "Retry"}
        </button>
      )}
      {can(TaskService, "CreateTask") && shellOk && (
        <Link href={`/tasks/new?clone=${task.id}`} className="button">
          Clone
        </Link>
      )}
      {problem && (
        <p className="field-error" role="alert">
          {problem}
        </p>
      )}
    </div>
  );
}
