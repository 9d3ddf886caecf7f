import type { Client } from "@connectrpc/connect";
import type { TaskService } from "../../../src/gen/task/v1/task_pb.js";

/** GetTaskLogs' largest page. */
const PAGE = 5000;

/**
 * The whole output of a task as text, read page by page with GetTaskLogs (stderr and system lines
 * marked, as the CLI prints them).
 */
export async function fetchTaskLog(client: Client<typeof TaskService>, id: bigint): Promise<string> {
  const out: string[] = [];
  let afterSeq = 0;
  for (;;) {
    const page = await client.getTaskLogs({ id, afterSeq, limit: PAGE });
    for (const l of page.lines) out.push(l.stream === "stdout" ? l.line : `${l.stream}: ${l.line}`);
    if (!page.more || page.lastSeq === afterSeq) break;
    afterSeq = page.lastSeq;
  }
  return out.length > 0 ? `${out.join("\n")}\n` : "";
}

/** Saves a task's whole output as task-<id>.log. */
export async function downloadTaskLog(client: Client<typeof TaskService>, id: bigint): Promise<void> {
  const text = await fetchTaskLog(client, id);
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = `task-${id}.log`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
