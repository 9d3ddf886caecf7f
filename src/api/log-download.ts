import type http from "node:http";
import type http2 from "node:http2";
import type { universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { Kysely } from "kysely";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Database } from "../store/schema.js";
import { isFinished } from "../store/lifecycle/index.js";
import { streamLogLines, type LogFilter, type StoredLogLine } from "../store/task-logs.js";
import { findTask } from "../store/tasks.js";
import { authorizeHttp, type Authenticator } from "./auth.js";
import { HTTP_RULES } from "./roles.js";
import type { TaskEvents } from "./task-events.js";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = Parameters<typeof universalResponseToNodeResponse>[1];

const PATH = /^\/tasks\/([^/]+)\/logs$/;
/** A follower re-checks this often even without a notification. */
const FOLLOW_POLL_MS = 1_000;

/** A line of the download: stdout as printed, stderr and system lines marked (as `task-cli logs` prints them). */
export function formatLogLine(line: Pick<StoredLogLine, "stream" | "line">): string {
  return line.stream === "stdout" ? line.line : `${line.stream}: ${line.line}`;
}

/** Writes with backpressure: resolves once the response can take more (or is closed). */
export function write(res: Response, text: string | Uint8Array): Promise<void> | undefined {
  if (res.write(text)) return undefined;
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.once("drain", done);
    res.once("close", done);
  });
}

/**
 * GET /tasks/{id}/logs: a task's whole output as text/plain, read from the database a few chunks
 * at a time and written with backpressure, so a large log is never held in memory. `?follow=true`
 * keeps the response open and streams new lines until the task is finished (`curl -N` works like
 * `tail -f`); `attempt` and `stream` filter as GetTaskLogs does. Needs a token as the API does
 * (role reader; a task outside a restricted token's queues or types is 404). Returns false for other paths.
 */
export function logDownloadHandler(deps: { db: Kysely<Database>; events: TaskEvents; logger: Logger; auth: Authenticator }) {
  return (req: Request, res: Response): boolean => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const match = PATH.exec(url.pathname);
    if (!match) return false;
    const reply = (status: number, text: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": "text/plain; charset=utf-8", ...headers });
      res.end(`${text}\n`);
    };
    if (req.method !== "GET" && req.method !== "HEAD") {
      reply(405, "method not allowed: use GET", { allow: "GET, HEAD" });
      return true;
    }
    const id = match[1]!;
    // The token first, before the request is looked at, so nothing is revealed without one; a
    // restricted token's task outside its reach is 404 (authorize skips a malformed id, answered 400 below).
    authorizeHttp(deps.auth, deps.db, req.headers.authorization, HTTP_RULES.logDownload, "the log download", { taskId: id })
      .then((allowed) => {
        if ("status" in allowed) {
          return reply(allowed.status, allowed.text, allowed.status === 401 ? { "www-authenticate": 'Bearer realm="task-service"' } : {});
        }
        const problems: string[] = [];
        if (!/^[1-9]\d{0,18}$/.test(id) || BigInt(id) > 9_223_372_036_854_775_807n) problems.push("the task id must be a positive integer");
        const follow = url.searchParams.get("follow") ?? "false";
        if (!["true", "false", "1", "0"].includes(follow)) problems.push("follow must be true or false");
        const attempt = url.searchParams.get("attempt");
        if (attempt !== null && !/^[1-9]\d{0,8}$/.test(attempt)) problems.push("attempt must be a positive integer");
        const stream = url.searchParams.get("stream");
        if (stream !== null && !["stdout", "stderr", "system"].includes(stream)) problems.push("stream must be stdout, stderr or system");
        for (const key of url.searchParams.keys()) if (!["follow", "attempt", "stream"].includes(key)) problems.push(`unknown parameter ${key}`);
        if (problems.length > 0) return reply(400, `bad request: ${problems.join("; ")}`);
        const filter: LogFilter = { attempt: attempt ? Number(attempt) : undefined, stream: (stream ?? undefined) as LogFilter["stream"] };
        const closed = new AbortController();
        res.once("close", () => closed.abort());
        return serve(deps, id, filter, follow === "true" || follow === "1", req.method === "HEAD", res, reply, closed.signal);
      })
      .catch((err: unknown) => {
        deps.logger.warn({ taskId: id, err: errorMessage(err) }, "log download failed");
        if (!res.headersSent) reply(503, "the log could not be read (database unavailable?)");
        else res.destroy();
      });
    return true;
  };
}

async function serve(
  deps: { db: Kysely<Database>; events: TaskEvents },
  id: string,
  filter: LogFilter,
  follow: boolean,
  head: boolean,
  res: Response,
  reply: (status: number, text: string) => void,
  closed: AbortSignal,
): Promise<void> {
  const unsubscribe = follow ? await deps.events.subscribe(id) : undefined;
  try {
    let task = await findTask(deps.db, id);
    if (!task) return reply(404, `task ${id} not found`);
    res.writeHead(200, {
      "content-type": "text/plain; charset=utf-8",
      "content-disposition": `attachment; filename="task-${id}${filter.attempt ? `-attempt-${filter.attempt}` : ""}.log"`,
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
    });
    if (head) return void res.end();
    let lastSeq = 0;
    for (;;) {
      // Subscribed before reading, so a change between the read and the wait is not missed.
      const changed = follow ? deps.events.wait(id, FOLLOW_POLL_MS, closed) : undefined;
      // Output is stored before the outcome: a task seen finished before this read has nothing more.
      const finished = isFinished(task.status);
      for await (const lines of streamLogLines(deps.db, id, lastSeq, filter)) {
        if (closed.aborted) return;
        let text = "";
        for (const line of lines) text += `${formatLogLine(line)}\n`;
        lastSeq = lines.at(-1)!.seq;
        await write(res, text);
      }
      if (!follow || finished || closed.aborted) break;
      await changed;
      if (closed.aborted) return;
      task = await findTask(deps.db, id);
      if (!task) break; // deleted meanwhile
    }
    res.end();
  } finally {
    await unsubscribe?.();
  }
}
