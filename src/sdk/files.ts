import http from "node:http";
import https from "node:https";
import { Readable } from "node:stream";
import { readCa } from "../tls.js";

/** Where the API is and how to sign in: what createTaskClient and task-cli take. */
export interface FileTransferOptions {
  /** The server's base URL, e.g. http://127.0.0.1:8080. */
  address: string;
  /** An API token, sent as a bearer token. */
  token?: string;
  /** The CA to trust for an https:// address: a PEM file's path or its text (default: Node's trust store). */
  ca?: string | Buffer;
}

/** A stored upload: pass `upload` in CreateTask's `files` ({ name, upload }). */
export interface Upload {
  upload: string;
  size: number;
  sha256: string;
}

/** Sends one request with a streamed body (or none) and resolves with the response as soon as it starts. */
function send(options: FileTransferOptions, method: string, pathAndQuery: string, body?: { stream: Readable; size?: number }): Promise<{ res: http.IncomingMessage; req: http.ClientRequest }> {
  const url = new URL(pathAndQuery, options.address.endsWith("/") ? options.address : `${options.address}/`);
  const headers: Record<string, string> = {};
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (body) {
    headers["content-type"] = "application/octet-stream";
    if (body.size !== undefined) headers["content-length"] = String(body.size);
  }
  return new Promise((resolve, reject) => {
    const req = url.protocol === "https:" ? https.request(url, { method, headers, ca: readCa(options.ca) }) : http.request(url, { method, headers });
    let answered = false;
    req.once("response", (res) => {
      answered = true;
      // The server may answer before the body is sent (a refusal): stop sending it.
      body?.stream.unpipe(req);
      body?.stream.destroy();
      resolve({ res, req });
    });
    // A refused upload's connection is closed by the server once it has answered: not an error then.
    req.on("error", (err) => {
      if (!answered) reject(err);
    });
    if (!body) return void req.end();
    body.stream.once("error", (err) => {
      req.destroy(err);
      reject(err);
    });
    body.stream.pipe(req);
  });
}

/** GET a path of the API and resolve with the response as it starts (its body streams): the audit export. */
export async function openDownload(options: FileTransferOptions, pathAndQuery: string): Promise<http.IncomingMessage> {
  return (await send(options, "GET", pathAndQuery)).res;
}

async function text(res: http.IncomingMessage): Promise<string> {
  let out = "";
  for await (const chunk of res) out += String(chunk);
  return out.trim();
}

/**
 * Uploads a file for a task about to be created (POST /uploads), streaming it: nothing is held
 * whole in memory on either side. Resolves with the reference CreateTask's `files` names; a file
 * beyond the server's caps is refused (413) with a message naming the cap.
 */
export async function uploadFile(options: FileTransferOptions, name: string, data: Readable | AsyncIterable<Uint8Array>, size?: number): Promise<Upload> {
  const stream = data instanceof Readable ? data : Readable.from(data);
  const { res, req } = await send(options, "POST", `uploads?name=${encodeURIComponent(name)}`, { stream, size });
  const body = await text(res);
  if (res.statusCode !== 201) {
    // Refused before the body was all sent: the connection cannot carry another request.
    req.destroy();
    throw new Error(`upload of ${name} refused: ${res.statusCode} ${body}`);
  }
  return JSON.parse(body) as Upload;
}

/**
 * Streams an output file of a task (GET /tasks/{id}/artifacts/{name}): of `attempt`, or of the
 * latest attempt that kept one by that name. Throws with the server's message when there is none.
 */
export async function downloadArtifact(options: FileTransferOptions, taskId: bigint | string, name: string, attempt?: number): Promise<Readable> {
  const query = attempt ? `?attempt=${attempt}` : "";
  const { res } = await send(options, "GET", `tasks/${taskId}/artifacts/${encodeURIComponent(name)}${query}`);
  if (res.statusCode !== 200) throw new Error(`artifact ${name} of task ${taskId}: ${res.statusCode} ${await text(res)}`);
  return res;
}
