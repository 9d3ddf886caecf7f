import http from "node:http";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dashboardHandler } from "../src/api/dashboard.js";
import { startTestApi, type TestApi } from "./helpers/api.js";

/** An HTTP server that answers with the dashboard handler over `dir`, 404 for what it declines. */
async function serve(dir: string): Promise<{ url: string; close(): Promise<void> }> {
  const handler = dashboardHandler(dir);
  const server = http.createServer((req, res) => {
    if (!handler(req, res)) {
      res.writeHead(404);
      res.end("declined");
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise((r) => server.close(() => r())) };
}

let dir: string;
let site: Awaited<ReturnType<typeof serve>>;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "dashboard-"));
  await mkdir(path.join(dir, "assets"));
  await writeFile(path.join(dir, "index.html"), "<!doctype html><title>Tasks</title>");
  await writeFile(path.join(dir, "assets", "index-abc123.js"), "console.log(1)");
  await writeFile(path.join(dir, "assets", "index-abc123.css"), "body{}");
  await writeFile(path.join(dir, "favicon.svg"), "<svg/>");
  await writeFile(path.join(dir, ".env"), "SECRET=1");
  site = await serve(dir);
});
afterAll(async () => {
  await site?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("dashboard static files", () => {
  it("serves files with their content types; hashed assets are cached for good, the page is revalidated", async () => {
    const js = await fetch(`${site.url}/assets/index-abc123.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(js.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(js.headers.get("x-content-type-options")).toBe("nosniff");
    expect(await js.text()).toBe("console.log(1)");
    expect((await fetch(`${site.url}/assets/index-abc123.css`)).headers.get("content-type")).toBe("text/css; charset=utf-8");
    const icon = await fetch(`${site.url}/favicon.svg`);
    expect(icon.headers.get("content-type")).toBe("image/svg+xml");
    expect(icon.headers.get("cache-control")).toBe("no-cache");
    const index = await fetch(`${site.url}/`);
    expect(index.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(index.headers.get("cache-control")).toBe("no-cache");
    expect(index.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    const head = await fetch(`${site.url}/`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
  });

  it("answers the dashboard's routes with the page, and other paths with 404", async () => {
    for (const route of ["/tasks", "/tasks/42", "/tasks/new?type=shell", "/tasks?status=failed", "/schedules", "/queues"]) {
      const res = await fetch(`${site.url}${route}`);
      expect(res.status, route).toBe(200);
      expect(await res.text(), route).toContain("<title>Tasks</title>");
    }
    const missing = await fetch(`${site.url}/assets/index-gone.js`);
    expect(missing.status).toBe(404);
    expect(missing.headers.get("content-type")).toBe("text/plain");
    for (const other of ["/robots.txt", "/no-such-page", "/api/v1/tasks", "/assets"]) expect((await fetch(`${site.url}${other}`)).status, other).toBe(404);
  });

  it("never serves hidden files or anything outside its folder, and leaves other methods alone", async () => {
    // fetch() and URL strings normalise "..": send the paths as they are.
    const { hostname, port } = new URL(site.url);
    const raw = (p: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        http.get({ hostname, port, path: p }, (res) => {
          let body = "";
          res.on("data", (c: Buffer) => (body += c.toString()));
          res.on("end", () => resolve({ status: res.statusCode!, body }));
        }).on("error", reject);
      });
    for (const p of ["/../package.json", "/assets/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/.env", "/assets/%2e%2e%2f.env", "/a%00b", "/a\\..\\b"]) {
      const res = await raw(p);
      expect(res.body, p).not.toContain("SECRET");
      expect(res.body, p).not.toContain("root:");
      expect(res.status, p).toBe(404);
    }
    expect((await fetch(`${site.url}/`, { method: "POST", body: "x" })).status).toBe(404);
  });

  it("says how to build the dashboard when it is not built", async () => {
    const empty = await mkdtemp(path.join(os.tmpdir(), "dashboard-empty-"));
    const bare = await serve(empty);
    try {
      const res = await fetch(`${bare.url}/`);
      expect(res.status).toBe(503);
      expect(await res.text()).toContain("npm run build:ui");
      expect((await fetch(`${bare.url}/tasks/3`)).status).toBe(503);
    } finally {
      await bare.close();
      await rm(empty, { recursive: true, force: true });
    }
  });
});

describe("the API server", () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await startTestApi({ config: { apiTokens: ["t0ken"] } });
  });
  afterAll(async () => api?.close());

  it("serves the dashboard at / without a token, keeps the API behind it and its own routes first", async () => {
    const page = await fetch(`${api.server.url}/`);
    expect([200, 503]).toContain(page.status);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect((await fetch(`${api.server.url}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${api.server.url}/healthz`)).text()).toBe("ok\n");
    const rpc = await fetch(`${api.server.url}/task.v1.TaskService/ListTasks`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(rpc.status).toBe(401);
    // An unknown RPC path is not answered with the page.
    const unknown = await fetch(`${api.server.url}/task.v1.TaskService/NoSuchMethod`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(unknown.headers.get("content-type")).not.toContain("text/html");
  });
});
