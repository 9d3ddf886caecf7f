import { useEffect, useState, type FormEvent } from "react";
import { Link, useLocation, useSearch } from "wouter";
import { useQuery } from "@connectrpc/connect-query";
import { TaskService, type TaskStatus } from "../../../../src/gen/task/v1/task_pb.js";
import { TaskTable } from "../../components/TaskTable";
import { STATUSES, statusName } from "../../format";
import { useLiveTaskList } from "../../hooks/useLiveTasks";
import { useNow } from "../../hooks/useNow";
import { errorText } from "../../services/field-errors";
import { PAGE_SIZES, parseIds, parseTaskListSearch, taskListSearchString, type TaskListSearch } from "./index.schema";

function toggle<T>(values: T[], value: T): T[] {
  return values.includes(value) ? values.filter((v) => v !== value) : [...values, value];
}

/** The tasks table with its filters, search and paging, every part of it in the URL. */
export function TaskList() {
  const search = parseTaskListSearch(useSearch());
  const [, navigate] = useLocation();
  const now = useNow();
  // Tokens of the pages before this one, for "Newer"; after a reload only "Newest" can go back.
  const [previous, setPrevious] = useState<string[]>([]);

  const go = (next: TaskListSearch, opts: { keepPrevious?: boolean } = {}) => {
    const qs = taskListSearchString(next);
    if (qs === taskListSearchString(search)) return;
    if (!opts.keepPrevious) setPrevious([]);
    navigate(qs ? `/tasks?${qs}` : "/tasks");
  };
  // Any filter change starts again from the newest page.
  const filter = (change: Partial<TaskListSearch>) => go({ ...search, ...change, cursor: "" });

  const types = useQuery(TaskService.method.listTaskTypes, {});
  const list = useLiveTaskList({
    statuses: search.statuses,
    types: search.types,
    ids: search.ids,
    scheduleIds: search.schedules,
    pageSize: search.pageSize,
    pageToken: search.cursor,
  });

  const [idText, setIdText] = useState(search.ids.join(", "));
  const [idProblem, setIdProblem] = useState("");
  const idsInUrl = search.ids.join(", ");
  useEffect(() => setIdText(idsInUrl), [idsInUrl]);

  function submitSearch(e: FormEvent) {
    e.preventDefault();
    const ids = parseIds(idText);
    if (!ids) {
      setIdProblem("Enter task ids: numbers, separated by spaces or commas.");
      return;
    }
    setIdProblem("");
    filter({ ids });
  }

  const knownTypes = [...new Set([...(types.data?.types.map((t) => t.name) ?? []), ...search.types])];
  const filtered = search.statuses.length + search.types.length + search.ids.length + search.schedules.length > 0;
  const data = list.data;

  return (
    <>
      <div className="page-title">
        <h1>Tasks</h1>
        <Link href="/tasks/new" className="button primary">
          New task
        </Link>
      </div>

      <section className="filters" aria-label="Filters">
        <fieldset>
          <legend>Status</legend>
          <div className="chips">
            {STATUSES.map((s: TaskStatus) => (
              <button key={s} type="button" className={`chip chip-status-${statusName(s).toLowerCase()}`} aria-pressed={search.statuses.includes(s)} onClick={() => filter({ statuses: toggle(search.statuses, s) })}>
                {statusName(s)}
              </button>
            ))}
          </div>
        </fieldset>
        <fieldset>
          <legend>Type</legend>
          <div className="chips">
            {knownTypes.map((t) => (
              <button key={t} type="button" className="chip" aria-pressed={search.types.includes(t)} onClick={() => filter({ types: toggle(search.types, t) })}>
                {t}
              </button>
            ))}
          </div>
        </fieldset>
        {search.schedules.length > 0 && (
          <fieldset>
            <legend>Schedule</legend>
            <div className="chips">
              {search.schedules.map((id) => (
                <button key={id.toString()} type="button" className="chip" aria-pressed="true" onClick={() => filter({ schedules: search.schedules.filter((s) => s !== id) })}>
                  #{id.toString()}
                </button>
              ))}
            </div>
          </fieldset>
        )}
        <form className="id-search" role="search" onSubmit={submitSearch} noValidate>
          <label htmlFor="id-search">Task id</label>
          <div className="inline">
            <input id="id-search" type="search" inputMode="numeric" placeholder="e.g. 42, 57" value={idText} onChange={(e) => setIdText(e.target.value)} aria-invalid={idProblem ? true : undefined} aria-describedby={idProblem ? "id-problem" : undefined} />
            <button type="submit">Search</button>
          </div>
          {idProblem && (
            <p id="id-problem" className="field-error" role="alert">
              {idProblem}
            </p>
          )}
        </form>
        {filtered && (
          <button type="button" className="link-button" onClick={() => (setIdText(""), go({ ...search, statuses: [], types: [], ids: [], schedules: [], cursor: "" }))}>
            Clear filters
          </button>
        )}
      </section>

      {list.isError && !data && (
        <p className="error-box" role="alert">
          Could not load tasks: {errorText(list.error)}
        </p>
      )}
      {data && (
        <>
          <p className="muted result-count" data-testid="result-count">
            {data.totalCount === 1n ? "1 task" : `${data.totalCount.toLocaleString()} tasks`}
            {filtered ? " match these filters" : ""}
          </p>
          {data.tasks.length === 0 ? (
            <p className="empty">{filtered ? "No tasks match these filters." : "No tasks yet."}</p>
          ) : (
            <TaskTable tasks={data.tasks} now={now} caption="Tasks, newest first" stale={list.isPlaceholderData} />
          )}
          <nav className="pager" aria-label="Pages">
            <button type="button" disabled={!search.cursor} onClick={() => go({ ...search, cursor: "" })}>
              Newest
            </button>
            <button
              type="button"
              disabled={!search.cursor}
              onClick={() => {
                const before = previous.at(-1) ?? "";
                setPrevious(previous.slice(0, -1));
                go({ ...search, cursor: before }, { keepPrevious: true });
              }}
            >
              Newer
            </button>
            <button
              type="button"
              disabled={!data.nextPageToken}
              onClick={() => {
                setPrevious([...previous, search.cursor]);
                go({ ...search, cursor: data.nextPageToken }, { keepPrevious: true });
              }}
            >
              Older
            </button>
            <label className="page-size">
              Per page{" "}
              <select value={search.pageSize} onChange={(e) => filter({ pageSize: Number(e.target.value) })}>
                {PAGE_SIZES.map((n) => (
                  <option key={n} value={n}>
                    {n}
                  </option>
                ))}
              </select>
            </label>
          </nav>
        </>
      )}
      {list.isPending && <p className="muted">Loading tasks…</p>}
    </>
  );
}
