import type http from "node:http";
import type http2 from "node:http2";
import type { universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { Readable } from "node:stream";
import type { Kysely } from "kysely";
import { errorMessage, FileTooLargeError } from "../errors.js";
import type { Logger } from "../logger.js";
import { findTaskFile, isFileName, FILE_NAME_RULE, storeUpload, type FileBytes, type FileCaps } from "../store/files.js";
import type { Database } from "../store/schema.js";
import { findTask } from "../store/tasks.js";
import { authorizeHttp, type Authenticator } from "./auth.js";
import { write } from "./log-download.js";
import { HTTP_RULES } from "./roles.js";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = Parameters<typeof universalResponseToNodeResponse>[1];

const UPLOAD_PATH = "/uploads";
const ARTIFACT_PATH = /^\/tasks\/([^/]+)\/artifacts\/([^/]+)$/;

/** What the file routes need. */
export interface FileTransferDeps {
  db: Kysely<Database>;
  bytes: FileBytes;
  caps: FileCaps;
  logger: Logger;
  auth: Authenticator;
}

/**
 * The plain-HTTP file routes beside the API (Connect's unary calls buffer whole messages, so bytes
 * never go through an RPC):
 * - `POST /uploads?name=rows.csv`: the body, streamed into storage as it arrives (role operator);
 *   201 with `{"upload": "up_...", "size": N, "sha256": "..."}`. CreateTask then names the upload
 *   in `files`. Beyond TASK_FILES_MAX_TASK_BYTES or the total cap: 413, and nothing kept.
 * - `GET /tasks/{id}/artifacts/{name}[?attempt=N]`: an output file, streamed from storage with
 *   backpressure (role reader; a restricted token's task outside its reach is 404, as the log download).
 * Returns false for other paths.
 */
export function fileTransferHandler(deps: FileTransferDeps) {
  return (req: Request, res: Response): boolean => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname === UPLOAD_PATH) {
      handleUpload(deps, req, res, url);
      return true;
    }
    const match = ARTIFACT_PATH.exec(url.pathname);
    if (!match) return false;
    handleDownload(deps, req, res, url, match[1]!, match[2]!);
    return true;
  };
}

function replier(res: Response) {
  return (status: number, text: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { "content-type": "text/plain; charset=utf-8", ...headers });
    res.end(`${text}\n`);
  };
}

const UNAUTHENTICATED = { "www-authenticate": 'Bearer realm="task-service"' };

function handleUpload(deps: FileTransferDeps, req: Request, res: Response, url: URL): void {
  const reply = replier(res);
  // A refusal answers at once and then discards what is left of the body: closing the connection
  // with unread data would reset it, and the client would see ECONNRESET instead of the answer.
  // A client that reads the answer stops sending (ours do); the request timeout bounds one that does not.
  const refuse = (status: number, text: string, headers: Record<string, string> = {}) => {
    reply(status, text, headers);
    req.resume();
  };
  if (req.method !== "POST") return refuse(405, "method not allowed: use POST", { allow: "POST" });
  const name = url.searchParams.get("name") ?? "upload";
  authorizeHttp(deps.auth, deps.db, req.headers.authorization, HTTP_RULES.upload, "an upload")
    .then(async (allowed) => {
      if ("status" in allowed) return refuse(allowed.status, allowed.text, allowed.status === 401 ? UNAUTHENTICATED : {});
      if (!isFileName(name)) return refuse(400, `bad request: name: ${FILE_NAME_RULE}`);
      for (const key of url.searchParams.keys()) if (key !== "name") return refuse(400, `bad request: unknown parameter ${key}`);
      const declared = Number(req.headers["content-length"] ?? Number.NaN);
      if (declared > deps.caps.perTaskBytes) return refuse(413, new FileTooLargeError(name, "per-task", deps.caps.perTaskBytes).message);
      try {
        // destroyOnReturn false: a write that stops early (a cap) must leave the request readable, to be drained.
        const body = (req as Readable).iterator({ destroyOnReturn: false }) as AsyncIterable<Uint8Array>;
        const stored = await storeUpload(deps.db, deps.bytes, name, body, deps.caps);
        res.writeHead(201, { "content-type": "application/json" });
        res.end(`${JSON.stringify({ upload: stored.ref, name, size: stored.size, sha256: stored.sha256 })}\n`);
      } catch (err) {
        if (err instanceof FileTooLargeError) return refuse(413, err.message);
        throw err;
      }
    })
    .catch((err: unknown) => {
      deps.logger.warn({ err: errorMessage(err) }, "upload failed");
      if (!res.headersSent) refuse(503, "the upload could not be stored (database unavailable?)");
      else res.destroy();
    });
}

function handleDownload(deps: FileTransferDeps, req: Request, res: Response, url: URL, id: string, rawName: string): void {
  const reply = replier(res);
  if (req.method !== "GET" && req.method !== "HEAD") return reply(405, "method not allowed: use GET", { allow: "GET, HEAD" });
  authorizeHttp(deps.auth, deps.db, req.headers.authorization, HTTP_RULES.artifactDownload, "an artifact download", { taskId: id })
    .then(async (allowed) => {
      if ("status" in allowed) return reply(allowed.status, allowed.text, allowed.status === 401 ? UNAUTHENTICATED : {});
      const problems: string[] = [];
      if (!/^[1-9]\d{0,18}$/.test(id) || BigInt(id) > 9_223_372_036_854_775_807n) problems.push("the task id must be a positive integer");
      let name = "";
      try {
        name = decodeURIComponent(rawName);
      } catch {
        problems.push("the file name is not valid URL encoding");
      }
      const attempt = url.searchParams.get("attempt");
      if (attempt !== null && !/^[1-9]\d{0,8}$/.test(attempt)) problems.push("attempt must be a positive integer");
      for (const key of url.searchParams.keys()) if (key !== "attempt") problems.push(`unknown parameter ${key}`);
      if (problems.length > 0) return reply(400, `bad request: ${problems.join("; ")}`);
      const file = await findTaskFile(deps.db, id, "out", name, attempt === null ? undefined : Number(attempt));
      if (!file) {
        if (!(await findTask(deps.db, id))) return reply(404, `task ${id} not found`);
        return reply(404, `task ${id} has no artifact ${name}${attempt === null ? "" : ` from attempt ${attempt}`}`);
      }
      res.writeHead(200, {
        "content-type": "application/octet-stream",
        "content-length": String(file.size),
        "content-disposition": `attachment; filename="${file.name}"`,
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
        etag: `"${file.sha256}"`,
        "x-task-attempt": String(file.attempt),
      });
      if (req.method === "HEAD") return void res.end();
      let closed = false;
      res.once("close", () => (closed = true));
      for await (const chunk of deps.bytes.read(file.id)) {
        if (closed) return;
        await write(res, chunk);
      }
      res.end();
    })
    .catch((err: unknown) => {
      deps.logger.warn({ taskId: id, err: errorMessage(err) }, "artifact download failed");
      if (!res.headersSent) reply(503, "the file could not be read (database unavailable?)");
      else res.destroy();
    });
}
