import { currentToken, noteUnauthenticated } from "./auth";
import { saveDownload } from "./task-log";

/**
 * Streams a file to the server (POST /uploads) for a task about to be created; resolves with the
 * reference CreateTask's `files` names. The browser sends the File from disk: it is never read into
 * the page's memory.
 */
export async function uploadFile(name: string, file: Blob): Promise<string> {
  const token = currentToken();
  const res = await fetch(`${window.location.origin}/uploads?name=${encodeURIComponent(name)}`, {
    method: "POST",
    headers: { "content-type": "application/octet-stream", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: file,
  });
  if (res.status === 401) noteUnauthenticated(token);
  if (res.status !== 201) throw new Error(`the file ${name} was refused: ${(await res.text()).trim()}`);
  return ((await res.json()) as { upload: string }).upload;
}

/** Saves an output file of a task, from the path ListTaskFiles gave it. */
export function downloadTaskFile(path: string, name: string): Promise<void> {
  return saveDownload(`${window.location.origin}${path}`, name);
}
