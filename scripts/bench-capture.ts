/**
 * Output capture and reading, for `npm run bench`: lines per second stored for one task and for
 * ten at once, through the worker's TaskLogSink (chunks of up to 1,000 lines per row, with
 * backpressure) against the former layout (a row per line, batches of 500 numbered in SQL), on
 * the same database; then how long `--tail 100`, a line range and the counts take on a task with
 * 1,000,000 stored lines. Prints figures; asserts nothing.
 */
import { sql } from "kysely";
import { shellPlugin } from "../src/plugins/shell.js";
import { TaskLogSink } from "../src/worker/log-sink.js";
import type { Logger } from "../src/logger.js";
import type { Db } from "../src/store/db.js";
import { countLogLines, readLogRange, readLogTail } from "../src/store/task-logs.js";
import { insertTasks } from "../src/store/tasks.js";

export interface ShellFigures {
  mb: number;
  seconds: number;
  lines: number;
  rssBeforeMb: number;
  rssPeakMb: number;
}

/** `yes | head -c <mb>M` through the shell plugin into a real sink, timed, with this process's RSS sampled. */
export async function benchShellCapture(db: Db, logger: Logger, mb: number): Promise<ShellFigures> {
  const [taskId] = await newTasks(db, 1);
  const sink = new TaskLogSink(db.kysely, taskId!, 1, { maxLines: 10_000, maxBytes: 16 * 1024 * 1024 }, logger);
  const plugin = shellPlugin({ enabled: true, killGraceMs: 1_000 });
  const rssBeforeMb = process.memoryUsage().rss / 1024 / 1024;
  let rssPeakMb = rssBeforeMb;
  const sampler = setInterval(() => (rssPeakMb = Math.max(rssPeakMb, process.memoryUsage().rss / 1024 / 1024)), 100);
  const t0 = performance.now();
  try {
    const result = await plugin.run({ command: `yes | head -c ${mb}M` }, { signal: new AbortController().signal, taskId: taskId!, attempt: 1, logger, output: sink });
    await sink.close();
    return { mb, seconds: (performance.now() - t0) / 1000, lines: Number(result.stdout_lines), rssBeforeMb, rssPeakMb };
  } finally {
    clearInterval(sampler);
  }
}

export interface CaptureFigures {
  chunkedOne: number;
  chunkedTen: number;
  rowsOne: number;
  rowsTen: number;
  oneLines: number;
  tenLines: number;
  tailMs: number;
  rangeMs: number;
  countMs: number;
  rowsTailMs: number;
  storedLines: number;
}

const line = (i: number) => `line ${i} of the build output, with some text after it`;

async function newTasks(db: Db, n: number): Promise<string[]> {
  const rows = await insertTasks(
    db,
    Array.from({ length: n }, (_, i) => ({ name: `capture-${i}`, type: "noop", parameters: {}, priority: 0, maxAttempts: 1, timeoutMs: 60_000, runAt: new Date(Date.now() + 3_600_000), idempotencyKey: null, requestHash: null })),
  );
  return rows.map((r) => r.id);
}

/** One task's lines through the sink, waiting whenever it says to slow down (as the shell plugin does). */
async function captureChunked(db: Db, taskId: string, lines: number, logger: Logger): Promise<void> {
  const sink = new TaskLogSink(db.kysely, taskId, 1, { maxLines: lines * 2, maxBytes: 1024 ** 3 }, logger);
  for (let i = 1; i <= lines; i++) if (!sink.write("stdout", line(i))) await sink.drain();
  await sink.close();
}

/** The former layout: a row per line, batches of 500, numbered after max(seq) in the statement. */
async function captureRows(db: Db, taskId: string, lines: number): Promise<void> {
  for (let start = 1; start <= lines; start += 500) {
    const batch = Array.from({ length: Math.min(500, lines - start + 1) }, (_, i) => ({ i: i + 1, stream: "stdout", line: line(start + i) }));
    await sql`
      with base as (select coalesce(max(seq), 0) as m from bench_log_rows where task_id = ${taskId})
      insert into bench_log_rows (task_id, seq, attempt, stream, line)
      select ${taskId}::bigint, base.m + x.i, 1, x.stream, x.line
      from base, jsonb_to_recordset(${JSON.stringify(batch)}::jsonb) as x(i int, stream text, line text)
    `.execute(db.kysely);
  }
}

async function timed(run: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await run();
  return (performance.now() - t0) / 1000;
}

/** Median of `n` timings of `run`, in ms. */
async function medianMs(n: number, run: () => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) times.push((await timed(run)) * 1000);
  times.sort((a, b) => a - b);
  return times[Math.floor(n / 2)]!;
}

export async function benchCapture(db: Db, logger: Logger, oneLines = 1_000_000, tenLines = 50_000): Promise<CaptureFigures> {
  await db.pool.query(`create table if not exists bench_log_rows (
    task_id bigint not null, seq integer not null, attempt integer not null, stream text not null, line text not null,
    created_at timestamptz not null default now(), primary key (task_id, seq))`);
  try {
    const [one, rowOne] = await newTasks(db, 2);
    const chunkedOne = oneLines / (await timed(() => captureChunked(db, one!, oneLines, logger)));
    const rowsOne = oneLines / (await timed(() => captureRows(db, rowOne!, oneLines)));
    const ten = await newTasks(db, 10);
    const chunkedTen = (10 * tenLines) / (await timed(() => Promise.all(ten.map((id) => captureChunked(db, id, tenLines, logger)))));
    const rowTen = await newTasks(db, 10);
    const rowsTen = (10 * tenLines) / (await timed(() => Promise.all(rowTen.map((id) => captureRows(db, id, tenLines)))));
    await db.pool.query("vacuum analyze task_logs, bench_log_rows");
    const tailMs = await medianMs(21, async () => {
      const lines = await readLogTail(db.kysely, one!, 100);
      if (lines.length !== 100 || lines[99]!.seq !== oneLines) throw new Error("tail returned the wrong lines");
    });
    const rangeMs = await medianMs(21, () => readLogRange(db.kysely, one!, oneLines / 2, oneLines / 2 + 99, 1000));
    const countMs = await medianMs(21, () => countLogLines(db.kysely, one!));
    const rowsTailMs = await medianMs(21, () => db.pool.query("select seq, line from bench_log_rows where task_id = $1 order by seq desc limit 100", [rowOne]));
    const storedLines = (await countLogLines(db.kysely, one!)).stored;
    return { chunkedOne, chunkedTen, rowsOne, rowsTen, oneLines, tenLines, tailMs, rangeMs, countMs, rowsTailMs, storedLines };
  } finally {
    await db.pool.query("drop table if exists bench_log_rows");
  }
}
