import { useEffect, useState, type FormEvent } from "react";
import { Link, useLocation, useSearch } from "wouter";
import { useQuery } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { TaskService, type Task, type TaskStatus } from "../../../../src/gen/task/v1/task_pb.js";
import { ConfirmDialog } from "../../components/ConfirmDialog";
import { SelectionBar } from "../../components/SelectionBar";
import { TaskTable } from "../../components/TaskTable";
import { fromLocalInput, STATUSES, statusName, toLocalInput } from "../../format";
import { useLiveTaskList } from "../../hooks/useLiveTasks";
import { useNow } from "../../hooks/useNow";
import { applyToTasks, BULK_ACTIONS, type BulkAction, type BulkOutcome } from "../../services/bulk-actions";
import { taskClient } from "../../services/client";
import { errorText } from "../../services/field-errors";
import { invalidateTaskLists } from "../../services/task-keys";
import { PAGE_SIZES, parseSearchText, parseTaskListSearch, taskListSearchString, type TaskListSearch } from "./index.schema";

const HOUR = 3_600_000;

/** The search box's text for a view: its ids, else its name prefix. */
function searchText(s: TaskListSearch): string {
  return s.ids.length > 0 ? s.ids.join(", ") : s.name;
}

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
    namePrefix: search.name,
    createdAfter: search.createdAfter && timestampFromDate(search.createdAfter),
    createdBefore: search.createdBefore && timestampFromDate(search.createdBefore),
    pageSize: search.pageSize,
    pageToken: search.cursor,
  });

  const [text, setText] = useState(searchText(search));
  const inUrl = searchText(search);
  useEffect(() => setText(inUrl), [inUrl]);

  function submitSearch(e: FormEvent) {
    e.preventDefault();
    filter(parseSearchText(text));
  }

  // Selected tasks, by id, as they were when ticked (a selection can span pages).
  const [selected, setSelected] = useState<Map<bigint, Task>>(new Map());
  const filterKey = taskListSearchString({ ...search, cursor: "" });
  // A new filter is a new question: the old selection does not carry over.
  useEffect(() => setSelected(new Map()), [filterKey]);

  const knownTypes = [...new Set([...(types.data?.types.map((t) => t.name) ?? []), ...search.types])];
  const filtered = search.statuses.length + search.types.length + search.ids.length + search.schedules.length > 0 || !!search.name || !!search.createdAfter || !!search.createdBefore;
  const data = list.data;
  const selection = {
    selected: new Set(selected.keys()),
    onChange(ids: bigint[], on: boolean) {
      const next = new Map(selected);
      for (const id of ids) {
        const task = data?.tasks.find((t) => t.id === id);
        if (on && task) next.set(id, task);
        else next.delete(id);
      }
      setSelected(next);
    },
  };

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
          <label htmlFor="task-search">Task id or name</label>
          <div className="inline">
            <input id="task-search" type="search" placeholder="42, 57 or nightly-" value={text} onChange={(e) => setText(e.target.value)} aria-describedby="task-search-hint" />
            <button type="submit">Search</button>
          </div>
          <p id="task-search-hint" className="muted hint">
            Ids, or the start of a name (case-sensitive).
          </p>
        </form>
        <fieldset className="time-filter">
          <legend>Created</legend>
          <div className="inline">
            <label>
              after{" "}
              <input type="datetime-local" value={toLocalInput(search.createdAfter)} onChange={(e) => filter({ createdAfter: fromLocalInput(e.target.value) })} />
            </label>
            <label>
              before{" "}
              <input type="datetime-local" value={toLocalInput(search.createdBefore)} onChange={(e) => filter({ createdBefore: fromLocalInput(e.target.value) })} />
            </label>
            <button type="button" className="chip" onClick={() => filter({ createdAfter: new Date(Date.now() - HOUR), createdBefore: undefined })}>
              Last hour
            </button>
            <button type="button" className="chip" onClick={() => filter({ createdAfter: new Date(Date.now() - 24 * HOUR), createdBefore: undefined })}>
              Last 24 h
            </button>
          </div>
        </fieldset>
        {filtered && (
          <button type="button" className="link-button" onClick={() => (setText(""), go({ ...search, statuses: [], types: [], ids: [], schedules: [], name: "", createdAfter: undefined, createdBefore: undefined, cursor: "" }))}>
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
            {data.totalCount === 1n ? "1 task" : `${data.totalCount.toLocaleString()}${data.totalCountExact ? "" : "+"} tasks`}
            {filtered ? " match these filters" : ""}
          </p>
          <BulkActions selected={[...selected.values()]} onDone={() => setSelected(new Map())} />
          {data.tasks.length === 0 ? (
            <p className="empty">{filtered ? "No tasks match these filters." : "No tasks yet."}</p>
          ) : (
            <TaskTable tasks={data.tasks} now={now} caption="Tasks, newest first" stale={list.isPlaceholderData} selection={selection} />
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

/** The selection's action bar, its confirmation, and what the action did. */
function BulkActions({ selected, onDone }: { selected: Task[]; onDone(): void }) {
  const queryClient = useQueryClient();
  const [confirming, setConfirming] = useState<BulkAction | undefined>();
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<{ action: BulkAction; result: BulkOutcome } | undefined>();

  async function run(action: BulkAction, tasks: Task[]) {
    setBusy(true);
    try {
      const result = await applyToTasks(taskClient, action, tasks.map((t) => t.id));
      setOutcome({ action, result });
      onDone();
      await invalidateTaskLists(queryClient);
    } finally {
      setBusy(false);
      setConfirming(undefined);
    }
  }

  const eligible = confirming ? selected.filter(BULK_ACTIONS[confirming].applies) : [];
  return (
    <>
      {selected.length > 0 && <SelectionBar tasks={selected} onAction={setConfirming} onClear={onDone} />}
      {outcome && (
        <p className="bulk-outcome" role="status" data-testid="bulk-outcome">
          {outcome.result.changed === 1 ? "1 task" : `${outcome.result.changed} tasks`} {BULK_ACTIONS[outcome.action].done}
          {outcome.result.refused.length > 0 && `; ${outcome.result.refused.length} refused: ${outcome.result.refused.map((r) => `#${r.id} (${r.reason})`).join(", ")}`}
          .{" "}
          <button type="button" className="link-button" onClick={() => setOutcome(undefined)}>
            Dismiss
          </button>
        </p>
      )}
      {confirming && (
        <ConfirmDialog
          title={`${BULK_ACTIONS[confirming].label} ${eligible.length === 1 ? "1 task" : `${eligible.length} tasks`}?`}
          confirmLabel={busy ? "Working…" : `${BULK_ACTIONS[confirming].label} ${eligible.length}`}
          danger={BULK_ACTIONS[confirming].danger}
          busy={busy}
          onConfirm={() => void run(confirming, eligible)}
          onClose={() => setConfirming(undefined)}
        >
          <p data-testid="confirm-count">
            This will {BULK_ACTIONS[confirming].verb} {eligible.length === 1 ? "1 task" : `${eligible.length} tasks`}: {eligible.slice(0, 10).map((t) => `#${t.id}`).join(", ")}
            {eligible.length > 10 ? ` and ${eligible.length - 10} more` : ""}.
          </p>
          {selected.length > eligible.length && <p className="muted">{selected.length - eligible.length} of the selected tasks cannot be {BULK_ACTIONS[confirming].done} in their status and are left alone.</p>}
        </ConfirmDialog>
      )}
    </>
  );
}
