import { currentToken, noteUnauthenticated } from "./auth";

/** Where the server serves a task's whole output as text (GET /tasks/{id}/logs). */
export function taskLogUrl(id: bigint): string {
  return `${window.location.origin}/tasks/${id}/logs`;
}

/**
 * Saves a task's whole output as task-<id>.log, from the server's plain-text download (streamed
 * from the database in chunks; stderr and system lines marked, as the CLI prints them).
 */
export function downloadTaskLog(id: bigint): Promise<void> {
  return saveDownload(taskLogUrl(id), `task-${id}.log`);
}

/**
 * Saves what a GET of `url` on this server returns, under the name its content-disposition gives
 * (else `fallbackName`). Fetched rather than linked, so the bearer token goes in a header, never in
 * the URL.
 */
export async function saveDownload(url: string, fallbackName: string): Promise<void> {
  const token = currentToken();
  const res = await fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  if (res.status === 401) noteUnauthenticated(token);
  if (!res.ok) throw new Error(`${res.status} ${(await res.text()).trim()}`);
  const blob = await res.blob();
  const href = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = href;
  a.download = /filename="([^"]+)"/.exec(res.headers.get("content-disposition") ?? "")?.[1] ?? fallbackName;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10_000);
}
