import { readdir, readFile } from "node:fs/promises";
import path from "node:path";

/** One run of a task (one copy of one attempt), from its marker file `TASK.ATTEMPT.PID`. */
export interface MarkerRun {
  taskId: string;
  /** `attempt.pid`, naming the copy. */
  copy: string;
  /** First and last time it wrote (ms since the epoch, microsecond precision). */
  from: number;
  to: number;
}

/** Reads every marker file of a chaos run. */
export async function readMarkers(dir: string): Promise<MarkerRun[]> {
  const runs: MarkerRun[] = [];
  for (const file of await readdir(dir)) {
    const [taskId, attempt, pid] = file.split(".");
    const times = (await readFile(path.join(dir, file), "utf8"))
      .split("\n")
      .filter(Boolean)
      // $EPOCHREALTIME: seconds with a six-digit fraction (its separator follows the locale).
      .map((l) => Number(l.replace(",", ".")) * 1000);
    if (times.length === 0) continue;
    runs.push({ taskId: taskId!, copy: `${attempt}.${pid}`, from: Math.min(...times), to: Math.max(...times) });
  }
  return runs;
}

/** Pairs of copies of one task whose intervals intersect: two copies ran at once. */
export function overlaps(runs: MarkerRun[]): { taskId: string; first: string; second: string; overlapMs: number }[] {
  const byTask = new Map<string, MarkerRun[]>();
  for (const r of runs) byTask.set(r.taskId, [...(byTask.get(r.taskId) ?? []), r]);
  const found: { taskId: string; first: string; second: string; overlapMs: number }[] = [];
  for (const [taskId, list] of byTask) {
    list.sort((a, b) => a.from - b.from);
    for (let i = 1; i < list.length; i++) {
      for (let j = 0; j < i; j++) {
        if (list[j]!.to >= list[i]!.from) found.push({ taskId, first: list[j]!.copy, second: list[i]!.copy, overlapMs: list[j]!.to - list[i]!.from });
      }
    }
  }
  return found;
}
