import { usePermissions } from "../services/permissions";
import { useState } from "react";
import { Link } from "wouter";
import { useMutation } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { ScheduleService, type Schedule } from "../../../src/gen/task/v1/schedule_pb.js";
import type { Task } from "../../../src/gen/task/v1/task_pb.js";
import { StatusBadge } from "../components/StatusBadge";
import { formatAbsolute, formatRelative, toDate } from "../format";
import { useLiveSchedules } from "../hooks/useLiveTasks";
import { useNow } from "../hooks/useNow";
import { errorText } from "../services/field-errors";
import { invalidateSchedules, invalidateTaskLists } from "../services/task-keys";

function When({ date, now }: { date: Date | undefined; now: number }) {
  if (!date) return <span className="muted">—</span>;
  return (
    <time dateTime={date.toISOString()} title={formatAbsolute(date)}>
      {formatRelative(date, now)}
    </time>
  );
}

/** The schedules as a table (cards on a narrow screen), with pause/resume and "run now". */
export function ScheduleList() {
  const now = useNow();
  const list = useLiveSchedules();
  const data = list.data;

  return (
    <>
      <h1>Schedules</h1>
      {list.isError && !data && (
        <p className="error-box" role="alert">
          Could not load schedules: {errorText(list.error)}
        </p>
      )}
      {data &&
        (data.schedules.length === 0 ? (
          <p className="empty">
            No schedules yet. Create one with <code>task-cli schedule create</code>.
          </p>
        ) : (
          <table className="schedule-table">
            <caption className="visually-hidden">Schedules, by name</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Expression</th>
                <th scope="col">Zone</th>
                <th scope="col">Type</th>
                <th scope="col">Next run</th>
                <th scope="col">Last run</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {data.schedules.map((s) => (
                <ScheduleRow key={s.id.toString()} schedule={s} now={now} />
              ))}
            </tbody>
          </table>
        ))}
      {list.isPending && <p className="muted">Loading schedules…</p>}
    </>
  );
}

function ScheduleRow({ schedule, now }: { schedule: Schedule; now: number }) {
  const spec = schedule.spec!;
  return (
    <tr data-schedule={spec.name}>
      <td data-label="Name" className="name-cell">
        <Link href={`/tasks?schedule=${schedule.id}`} title="The tasks this schedule created">
          {spec.name}
        </Link>
        {spec.paused && (
          <span className="tag" data-testid="paused">
            paused
          </span>
        )}
      </td>
      <td data-label="Expression">
        <code>{spec.cron}</code>
      </td>
      <td data-label="Zone">{spec.timeZone || "UTC"}</td>
      <td data-label="Type">{spec.task?.type}</td>
      <td data-label="Next run" data-testid="next-run">
        <When date={toDate(schedule.nextRunAt)} now={now} />
      </td>
      <td data-label="Last run">
        <When date={toDate(schedule.lastRunAt)} now={now} />
        {schedule.lastTaskId > 0n && (
          <>
            {" "}
            <Link href={`/tasks/${schedule.lastTaskId}`} aria-label={`Last task #${schedule.lastTaskId}`}>
              <StatusBadge status={schedule.lastTaskStatus} />
            </Link>
          </>
        )}
        {schedule.lastError && (
          <span className="field-error schedule-problem" title={schedule.lastError}>
            {schedule.lastError}
          </span>
        )}
      </td>
      <td data-label="Actions">
        <ScheduleActions schedule={schedule} />
      </td>
    </tr>
  );
}

/** Pause or resume, and "run now" (with a confirmation: it creates a task), as the task actions do. */
function ScheduleActions({ schedule }: { schedule: Schedule }) {
  const name = schedule.spec!.name;
  const queryClient = useQueryClient();
  const [confirming, setConfirming] = useState(false);
  const [problem, setProblem] = useState("");
  const [started, setStarted] = useState<Task | undefined>();
  const done = () => invalidateSchedules(queryClient);
  const pause = useMutation(ScheduleService.method.pauseSchedule, {
    onSuccess: done,
    onError: (err) => setProblem(`Pause failed: ${errorText(err)}`),
  });
  const resume = useMutation(ScheduleService.method.resumeSchedule, {
    onSuccess: done,
    onError: (err) => setProblem(`Resume failed: ${errorText(err)}`),
  });
  const trigger = useMutation(ScheduleService.method.triggerSchedule, {
    onSuccess: (res) => (setConfirming(false), setStarted(res.task), done(), invalidateTaskLists(queryClient)),
    onError: (err) => setProblem(`Run failed: ${errorText(err)}`),
  });
  const busy = pause.isPending || resume.isPending;
  // Changing schedules is for admins (src/api/roles.ts); others see them without buttons.
  const { can } = usePermissions();

  return (
    <div className="task-actions schedule-actions">
      {schedule.spec!.paused
        ? can(ScheduleService, "ResumeSchedule") && (
            <button type="button" disabled={busy} onClick={() => (setProblem(""), resume.mutate({ name }))}>
              {resume.isPending ? "Resuming…" : "Resume"}
            </button>
          )
        : can(ScheduleService, "PauseSchedule") && (
            <button type="button" disabled={busy} onClick={() => (setProblem(""), pause.mutate({ name }))}>
              {pause.isPending ? "Pausing…" : "Pause"}
            </button>
          )}
      {!can(ScheduleService, "TriggerSchedule") ? null : confirming ? (
        // Focus starts on the safe choice; Escape backs out.
        <span className="confirm" role="group" aria-label="Confirm run now" onKeyDown={(e) => e.key === "Escape" && setConfirming(false)}>
          <span>Create a task now?</span>
          <button type="button" className="primary" disabled={trigger.isPending} onClick={() => (setProblem(""), trigger.mutate({ name }))}>
            {trigger.isPending ? "Starting…" : "Yes, run it"}
          </button>
          <button type="button" autoFocus onClick={() => setConfirming(false)}>
            Not now
          </button>
        </span>
      ) : (
        <button type="button" onClick={() => (setStarted(undefined), setConfirming(true))}>
          Run now
        </button>
      )}
      {started && (
        <span role="status">
          Started <Link href={`/tasks/${started.id}`}>task #{started.id.toString()}</Link>
        </span>
      )}
      {problem && (
        <p className="field-error" role="alert">
          {problem}
        </p>
      )}
    </div>
  );
}
