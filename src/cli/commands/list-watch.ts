import { create, toJson } from "@bufbuild/protobuf";
import { ListTasksResponseSchema, TaskChange_Kind, WatchTasksResponseSchema, TaskStatus, type Task } from "../../gen/task/v1/task_pb.js";
import { Backoff, sleep } from "../../backoff.js";
import { taskClient } from "../client.js";
import type { CliIO } from "../io.js";
import { isoTime, progressText, statusName } from "../output.js";
import type { GlobalOptions } from "../program.js";
import { taskListTable } from "../views.js";

const KIND = { [TaskChange_Kind.CREATED]: "created", [TaskChange_Kind.STATUS_CHANGED]: "changed", [TaskChange_Kind.FINISHED]: "finished", [TaskChange_Kind.PROGRESS]: "progress", [TaskChange_Kind.UNSPECIFIED]: "changed" };
/** A redraw of the table at most this often. */
const REDRAW_MS = 200;

/**
 * `task list --watch`: the list, then every change WatchTasks reports for the same filter. On a
 * terminal the table is redrawn in place; otherwise (a pipe, CI) each change is one line (one
 * JSON object with --output json). Reconnects with backoff from the last cursor, so nothing is
 * missed or repeated; a resync re-reads the list. Runs until interrupted.
 */
export async function watchTaskList(io: CliIO, g: GlobalOptions, filter: { statuses: TaskStatus[]; types: string[]; queues?: string[]; pageSize: number }, signal?: AbortSignal): Promise<void> {
  const client = taskClient(g);
  const pageSize = filter.pageSize || 50;
  const listFilter = { statuses: filter.statuses, types: filter.types, queues: filter.queues ?? [] };
  const tasks = new Map<bigint, Task>();
  let total = 0n;
  const tty = io.isTTY && g.output === "table";
  let redrawTimer: NodeJS.Timeout | undefined;
  const draw = () => {
    redrawTimer = undefined;
    const shown = [...tasks.values()].sort((a, b) => (a.id < b.id ? 1 : -1)).slice(0, pageSize);
    const table = taskListTable(create(ListTasksResponseSchema, { tasks: shown, totalCount: total }), io.columns);
    // Home, clear, draw: the table updates in place.
    io.stdout.write(`\x1b[H\x1b[2J${table}\nwatching for changes (Ctrl-C to stop)  ${new Date().toLocaleTimeString()}\n`);
  };
  const redraw = () => (redrawTimer ??= setTimeout(draw, REDRAW_MS));
  const reload = async () => {
    const res = await client.listTasks({ ...listFilter, pageSize });
    tasks.clear();
    for (const t of res.tasks) tasks.set(t.id, t);
    total = res.totalCount;
    if (tty) draw();
    else if (g.output === "table") io.stdout.write(`${taskListTable(res, io.columns)}\n`);
    else io.stdout.write(`${JSON.stringify(toJson(ListTasksResponseSchema, res))}\n`);
  };
  let cursor = "";
  let listed = false;
  const reconnects = new Backoff({ baseMs: 500, maxMs: 10_000 });
  while (!signal?.aborted) {
    let interrupted: string | undefined;
    try {
      for await (const res of client.watchTasks({ filter: listFilter, cursor }, { signal })) {
        reconnects.succeeded();
        const { event } = res;
        if (event.case === "heartbeat") {
          cursor = event.value.cursor;
          // The first cursor is in hand: the list read now misses nothing that follows.
          if (!listed) {
            listed = true;
            await reload();
          }
          continue;
        }
        if (event.case === "resync") {
          cursor = event.value.cursor;
          if (!tty && g.output === "table") io.stdout.write(`resync: ${event.value.reason}\n`);
          await reload();
          continue;
        }
        if (event.case !== "change") continue;
        const change = event.value;
        cursor = change.cursor;
        if (g.output !== "table") {
          io.stdout.write(`${JSON.stringify(toJson(WatchTasksResponseSchema, res))}\n`);
          continue;
        }
        const t = change.task!;
        if (tty) {
          if (change.kind === TaskChange_Kind.CREATED && !tasks.has(t.id)) total++;
          const leaving = filter.statuses.length > 0 && !filter.statuses.includes(t.status);
          if (leaving) tasks.delete(t.id);
          else tasks.set(t.id, t);
          redraw();
        } else {
          const from = change.previousStatus ? `${statusName(change.previousStatus)} -> ` : "";
          if (change.kind === TaskChange_Kind.PROGRESS) {
            io.stdout.write(`${isoTime(change.changedAt)}  ${KIND[change.kind].padEnd(8)}  ${t.id}  ${t.name}  ${t.progress ? progressText(t.progress) : ""}\n`);
            continue;
          }
          io.stdout.write(`${isoTime(change.changedAt)}  ${KIND[change.kind].padEnd(8)}  ${t.id}  ${t.name}  ${from}${statusName(change.status)}  ${change.details}\n`);
        }
      }
    } catch (err) {
      interrupted = err instanceof Error ? err.message : String(err);
    }
    if (signal?.aborted) break;
    const waitMs = reconnects.failed();
    if (interrupted !== undefined) io.stderr.write(`watch interrupted (${interrupted}); reconnecting in ${waitMs / 1000}s\n`);
    await sleep(waitMs, signal);
  }
  clearTimeout(redrawTimer);
}
