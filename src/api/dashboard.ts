import { readFile, stat } from "node:fs/promises";
import type http from "node:http";
import type http2 from "node:http2";
import type { universalResponseToNodeResponse } from "@connectrpc/connect-node";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** Where `npm run build:ui` writes the dashboard: ui/dist at the repository root (from src/api or dist/api). */
export const DEFAULT_DASHBOARD_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../ui/dist");

type Request = http.IncomingMessage | http2.Http2ServerRequest;
/** The response type connect-node's fallback hands over (HTTP/1.1 or HTTP/2). */
type Response = Parameters<typeof universalResponseToNodeResponse>[1];

/** Serves one request if it is for the dashboard; returns false to let the caller answer it. */
export type DashboardHandler = (req: Request, res: Response) => boolean;

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
  ".map": "application/json",
};

/**
 * The page needs its own scripts and styles and the API on the same origin, nothing else. No
 * framing, so another site cannot overlay buttons on it.
 */
const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/**
 * The first path segments of the dashboard's own routes (ui/src/app.tsx), answered with the page so a
 * reload or a shared link works; any other unknown path stays a plain 404. A new view adds its segment.
 */
const CLIENT_SECTIONS = new Set(["tasks", "schedules", "queues", "audit"]);

/** Vite puts content-hashed files under assets/: a changed file gets a new name, so they can be kept forever. */
const IMMUTABLE = "public, max-age=31536000, immutable";

const NOT_BUILT_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Dashboard not built</title></head>
<body>
<h1>The dashboard is not built</h1>
<p>The API is running. To build the web dashboard, run this in the repository and reload:</p>
<pre>npm run build:ui</pre>
<p>(<code>npm install</code> runs it too.)</p>
</body></html>
`;

/**
 * The web dashboard's static files (ui/dist): GET and HEAD only, no authentication (the files hold no
 * data; every API call the page makes is authorised by the API). The dashboard's own routes such as
 * /tasks/42 get index.html, so they survive a reload; anything else that is not a file (a missing
 * hashed asset included) is a 404, not HTML a browser would try to run. Files are read per request, so
 * a rebuild needs no restart.
 */
export function dashboardHandler(dir: string = DEFAULT_DASHBOARD_DIR): DashboardHandler {
  const root = path.resolve(dir);
  return (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    const pathname = safePathname(req.url ?? "/");
    if (pathname === undefined) return false;
    void respond(req, res, root, pathname).catch(() => {
      if (!res.headersSent) send(res, req, 500, { "content-type": "text/plain" }, "dashboard unavailable\n");
      else res.destroy();
    });
    return true;
  };
}

/**
 * The decoded URL path, or undefined when it names a hidden file or a parent folder (checked on the
 * path as sent, before anything could normalise ".." away), so no request reaches outside the folder.
 */
function safePathname(url: string): string | undefined {
  let pathname: string;
  try {
    pathname = decodeURIComponent(url.split(/[?#]/, 1)[0]!);
  } catch {
    return undefined;
  }
  if (!pathname.startsWith("/") || pathname.includes("\0") || pathname.includes("\\")) return undefined;
  if (pathname.split("/").some((s) => s === ".." || s.startsWith("."))) return undefined;
  return pathname;
}

async function respond(req: Request, res: Response, root: string, pathname: string): Promise<void> {
  const file = path.join(root, pathname);
  if (pathname !== "/" && (await isFile(file))) {
    const body = await readFile(file);
    const type = CONTENT_TYPES[path.extname(file)] ?? "application/octet-stream";
    const cache = pathname.startsWith("/assets/") ? IMMUTABLE : "no-cache";
    send(res, req, 200, { "content-type": type, "cache-control": cache }, body);
    return;
  }
  const section = pathname.split("/")[1] ?? "";
  if (pathname !== "/" && !CLIENT_SECTIONS.has(section)) {
    send(res, req, 404, { "content-type": "text/plain" }, "not found\n");
    return;
  }
  const index = await readFile(path.join(root, "index.html")).catch(() => undefined);
  if (!index) {
    send(res, req, 503, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" }, NOT_BUILT_PAGE);
    return;
  }
  // index.html names the current hashed assets, so it is revalidated on every load.
  send(res, req, 200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-cache" }, index);
}

async function isFile(file: string): Promise<boolean> {
  return stat(file).then(
    (s) => s.isFile(),
    () => false,
  );
}

function send(res: Response, req: Request, status: number, headers: Record<string, string>, body: string | Buffer): void {
  const length = typeof body === "string" ? Buffer.byteLength(body) : body.length;
  (res as http.ServerResponse).writeHead(status, { ...SECURITY_HEADERS, ...headers, "content-length": String(length) });
  (res as http.ServerResponse).end(req.method === "HEAD" ? undefined : body);
}
