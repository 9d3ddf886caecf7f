import { readdirSync, readFileSync } from "node:fs";

/**
 * The pids of every `sleep <marker>` process on the machine, found by a scan of /proc (processes in
 * PID namespaces included, under their outer pids). Tests give each command a unique marker
 * (`uniqueSleep()`) and check that nothing carrying it survives. Only the sleep itself matches, not
 * the shells and wrappers whose command lines merely mention it.
 */
export function processesMatching(marker: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").replaceAll("\0", " ");
    } catch {
      continue; // exited while we looked
    }
    if (cmdline.trim() === `sleep ${marker}`) found.push(Number(entry));
  }
  return found;
}

/** A marker for one test's commands: a sleep duration no other process uses. */
export function uniqueSleep(seconds = 600): string {
  return `${seconds}.${String(Math.floor(Math.random() * 1e9)).padStart(9, "0")}`;
}
