import { usePermissions } from "../../services/permissions";
import { useEffect, useState, type FormEvent } from "react";
import { Link, useSearch } from "wouter";
import { useQuery } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { QueueService } from "../../../../src/gen/task/v1/queue_pb.js";
import { TaskService, type Task, type TaskStatus } from "../../../../src/gen/task/v1/task_pb.js";
import { TaskControlService } from "../../../../src/gen/task/v1/control_pb.js";
import { ConfirmDialog } from "../../components/ConfirmDialog";
import { SelectionBar } from "../../components/SelectionBar";
import { TaskTable } from "../../components/TaskTable";
import { fromLocalInput, STATUSES, statusName, toLocalInput } from "../../format";
import { useLiveTaskList } from "../../hooks/useLiveTasks";
import { useNow } from "../../hooks/useNow";
import { BULK_ACTIONS, countBulk, runBulk, selectionFor, type BulkAction, type BulkCount, type BulkTarget } from "../../services/bulk-actions";
import { controlClient } from "../../services/client";
import { errorText } from "../../services/field-errors";
import { invalidateTaskLists } from "../../services/task-keys";
import { CursorPager } from "../../components/CursorPager";
import { useCursorSearch } from "../../hooks/useCursorSearch";
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
  const { can } = usePermissions();
  // The bulk actions this token may take (deleting needs admin, as DeleteTask does); none: no checkboxes.
  const bulkActions = (Object.keys(BULK_ACTIONS) as BulkAction[]).filter((a) =>
    a === "delete" ? can(TaskControlService, "DeleteTask") : can(TaskControlService, "BulkTasks"),
  );
  const now = useNow();
  // Any filter change starts again from the newest page.
  const { go, filter, pager } = useCursorSearch("/tasks", search, taskListSearchString);

  const types = useQuery(TaskService.method.listTaskTypes, {});
  const queueList = useQuery(QueueService.method.listQueues, {});
  const list = useLiveTaskList({
    statuses: search.statuses,
    types: search.types,
    queues: search.queues,
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
  const knownQueues = [...new Set([...(queueList.data?.queues.map((q) => q.name) ?? []), ...search.queues])];
  const filtered = search.statuses.length + search.types.length + search.queues.length + search.ids.length + search.schedules.length > 0 || !!search.name || !!search.createdAfter || !!search.createdBefore;
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
        {can(TaskService, "CreateTask") && (
          <Link href="/tasks/new" className="button primary">
            New task
          </Link>
        )}
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
        {knownQueues.length > 1 || search.queues.length > 0 ? (
          <fieldset>
            <legend>Queue</legend>
            <div className="chips">
              {knownQueues.map((q) => (
                <button key={q} type="button" className="chip" aria-pressed={search.queues.includes(q)} onClick={() => filter({ queues: toggle(search.queues, q) })}>
                  {q}
                </button>
              ))}
            </div>
          </fieldset>
        ) : null}
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
          <button type="button" className="link-button" onClick={() => (setText(""), go({ ...search, statuses: [], types: [], queues: [], ids: [], schedules: [], name: "", createdAfter: undefined, createdBefore: undefined, cursor: "" }))}>
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
          <BulkActions actions={bulkActions} selected={[...selected.values()]} onDone={() => setSelected(new Map())} search={search} total={data.totalCount} totalExact={data.totalCountExact} pageTasks={data.tasks} />
          {data.tasks.length === 0 ? (
            <p className="empty">{filtered ? "No tasks match these filters." : "No tasks yet."}</p>
          ) : (
            <TaskTable tasks={data.tasks} now={now} caption="Tasks, newest first" stale={list.isPlaceholderData} selection={bulkActions.length > 0 ? selection : undefined} />
          )}
          <CursorPager {...pager(data.nextPageToken)}>
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
          </CursorPager>
        </>
      )}
      {list.isPending && <p className="muted">Loading tasks…</p>}
    </>
  );
}

/** The selection's action bar, its confirmation with the server's dry-run count, and what the action did. */
function BulkActions({ actions, selected, onDone, search, total, totalExact, pageTasks }: {
  actions: BulkAction[];
  selected: Task[];
  onDone(): void;
  search: TaskListSearch;
  total: bigint;
  totalExact: boolean;
  pageTasks: Task[];
}) {
  const queryClient = useQueryClient();
  const [allMatching, setAllMatching] = useState(false);
  const [confirming, setConfirming] = useState<BulkAction | undefined>();
  const [count, setCount] = useState<BulkCount | "error" | undefined>();
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<{ action: BulkAction; text: string } | undefined>();
  const filterKey = taskListSearchString({ ...search, cursor: "" });
  useEffect(() => setAllMatching(false), [filterKey]);

  const target: BulkTarget = allMatching ? { kind: "filter", filter: search } : { kind: "ids", ids: selected.map((t) => t.id) };
  const wholePageTicked = pageTasks.length > 0 && pageTasks.every((t) => selected.some((s) => s.id === t.id));
  const canSelectAll = wholePageTicked && total > BigInt(pageTasks.length) && selectionFor({ kind: "filter", filter: search }) !== undefined;

  async function open(action: BulkAction) {
    setConfirming(action);
    setCount(undefined);
    try {
      setCount(await countBulk(controlClient, action, target));
    } catch {
      setCount("error");
    }
  }
  async function run(action: BulkAction) {
    setBusy(true);
    try {
      const result = await runBulk(controlClient, action, target);
      setOutcome({ action, text: `${result.changed === 1n ? "1 task" : `${result.changed.toLocaleString()} tasks`} ${BULK_ACTIONS[action].done}` });
      setAllMatching(false);
      onDone();
    } catch (err) {
      setOutcome({ action, text: `${BULK_ACTIONS[action].label} failed: ${errorText(err)}` });
    } finally {
      setBusy(false);
      setConfirming(undefined);
      await invalidateTaskLists(queryClient);
    }
  }

  const counted = count && count !== "error" ? count : undefined;
  const n = (x: bigint) => (x === 1n ? "1 task" : `${x.toLocaleString()} tasks`);
  return (
    <>
      {(selected.length > 0 || allMatching) && (
        <SelectionBar
          tasks={selected}
          allMatching={allMatching ? { total, exact: totalExact } : undefined}
          onSelectAll={canSelectAll && !allMatching ? () => setAllMatching(true) : undefined}
          total={total}
          actions={actions}
          onAction={(a) => void open(a)}
          onClear={() => (setAllMatching(false), onDone())}
        />
      )}
      {outcome && (
        <p className="bulk-outcome" role="status" data-testid="bulk-outcome">
          {outcome.text}.{" "}
          <button type="button" className="link-button" onClick={() => setOutcome(undefined)}>
            Dismiss
          </button>
        </p>
      )}
      {confirming && (
        <ConfirmDialog
          title={counted ? `${BULK_ACTIONS[confirming].label} ${n(counted.eligible)}?` : `${BULK_ACTIONS[confirming].label} tasks?`}
          confirmLabel={busy ? "Working…" : counted ? `${BULK_ACTIONS[confirming].label} ${counted.eligible.toLocaleString()}` : BULK_ACTIONS[confirming].label}
          danger={BULK_ACTIONS[confirming].danger}
          busy={busy || !counted || counted.eligible === 0n}
          onConfirm={() => void run(confirming)}
          onClose={() => setConfirming(undefined)}
        >
          {!count && <p className="muted">Counting…</p>}
          {count === "error" && (
            <p className="error-box" role="alert">
              Could not count the tasks; nothing was changed.
            </p>
          )}
          {counted && (
            <>
              <p data-testid="confirm-count">
                This will {BULK_ACTIONS[confirming].verb} {n(counted.eligible)}
                {allMatching ? " matching this filter" : ""}
                {!allMatching && counted.eligible > 0n ? `: ${selected.filter(BULK_ACTIONS[confirming].applies).slice(0, 10).map((t) => `#${t.id}`).join(", ")}${counted.eligible > 10n ? " …" : ""}` : ""}.
              </p>
              {counted.matched > counted.eligible && (
                <p className="muted">
                  {counted.matched - counted.eligible === 1n ? "1 of the selected tasks" : `${(counted.matched - counted.eligible).toLocaleString()} of the selected tasks`} cannot be {BULK_ACTIONS[confirming].done} in their status and are left alone.
                </p>
              )}
            </>
          )}
        </ConfirmDialog>
      )}
    </>
  );
}
