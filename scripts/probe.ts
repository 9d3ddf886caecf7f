/**
 * Throws the worst a caller can send at a running task service and checks, after each attack, that
 * the service is still up and answering: wide query rows, endless output lines, idle and slow
 * connections, huge list filters, floods of unauthenticated health watchers and metrics scrapes,
 * a query that turns its own statement timeout off, a rebinding Host header.
 *
 *   tsx scripts/probe.ts http://127.0.0.1:8080 [--token T] [--shell-isolation]
 *
 * The server should run with shell enabled and short HTTP timeouts (see test/probe.test.ts, which
 * runs this against `task-cli up` in CI). Exits non-zero if any check fails.
 */
import { readdir, readFile } from "node:fs/promises";
import { setMaxListeners } from "node:events";
import http from "node:http";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Health } from "../src/gen/grpc/health/v1/health_pb.js";
import { TaskService, TaskStatus, type Task } from "../src/gen/task/v1/task_pb.js";

/** What to expect of the server under attack. */
export interface ProbeOptions {
  token?: string;
  /**
   * Also check shell isolation (`--shell-isolation`): a task cannot read the service's environment
   * and leaves no process behind. Needs the server on this machine, running as root (commands then
   * run as TASK_SHELL_USER in their own PID namespace), as `test/probe.test.ts` runs it.
   */
  expectShellIsolation?: boolean;
  log?: (line: string) => void;
}

/** One attack and whether the service held. */
export interface ProbeResult {
  name: string;
  ok: boolean;
  detail: string;
}

const CALL_TIMEOUT_MS = 60_000;
const terminal = new Set([TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED]);

/** Runs every attack in turn; never throws for a failed check, reports it. */
export async function probe(address: string, options: ProbeOptions = {}): Promise<ProbeResult[]> {
  const log = options.log ?? (() => undefined);
  const auth: Interceptor[] = options.token ? [(next) => (req) => (req.header.set("authorization", `Bearer ${options.token}`), next(req))] : [];
  // Every call has a deadline, so a server that hangs or dies fails the probe instead of stalling it.
  const defaultTimeoutMs = CALL_TIMEOUT_MS;
  const client = createClient(TaskService, createConnectTransport({ baseUrl: address, httpVersion: "1.1", interceptors: auth, defaultTimeoutMs }));
  const grpc = createClient(TaskService, createGrpcTransport({ baseUrl: address, interceptors: auth, defaultTimeoutMs }));
  const url = new URL(address);
  const results: ProbeResult[] = [];

  const answering = async (): Promise<string | undefined> => {
    try {
      const res = await fetch(`${address}/healthz`, { signal: AbortSignal.timeout(10_000) });
      if (res.status !== 200) return `/healthz answered ${res.status}`;
      await client.getTaskStatusCounts({}, { timeoutMs: 10_000 });
      return undefined;
    } catch (err) {
      return `service not answering: ${(err as Error).message}`;
    }
  };

  const check = async (name: string, attack: () => Promise<string | undefined>) => {
    log(`probe: ${name}`);
    let problem: string | undefined;
    try {
      problem = await attack();
    } catch (err) {
      problem = `attack threw: ${(err as Error).message}`;
    }
    problem ??= await answering();
    results.push({ name, ok: problem === undefined, detail: problem ?? "held" });
    log(`probe: ${name}: ${problem ?? "held"}`);
  };

  const finish = (task: Task | undefined, timeoutMs = 120_000) => waitForTask(client, task!.id, timeoutMs);

  await check("wide rows: 45 rows of 100 MB with max_rows 1", async () => {
    const { task } = await client.createTask({ name: "probe wide rows", type: "run_query", parameters: { sql: "select repeat('z', 100*1024*1024) as z from generate_series(1, 45)", max_rows: 1 } });
    const done = await finish(task);
    // Producing 100 MB rows takes PostgreSQL a while; hitting the statement limit is holding too.
    if (done.status === TaskStatus.FAILED && /statement timeout/.test(done.lastError)) return undefined;
    if (done.status !== TaskStatus.SUCCEEDED) return `task ended ${TaskStatus[done.status]}: ${done.lastError}`;
    const bytes = JSON.stringify(done.result).length;
    if (bytes > 2 * 1024 * 1024) return `stored a result of ${bytes} bytes`;
    const { tasks } = await client.listTasks({ pageSize: 10 });
    return tasks.length === 0 ? "ListTasks returned nothing" : undefined;
  });

  await check("endless line: 600 MB of shell output without a newline", async () => {
    const { task } = await client.createTask({ name: "probe endless line", type: "shell", parameters: { command: "head -c 600M /dev/zero | tr '\\0' x" } });
    const done = await finish(task);
    return done.status === TaskStatus.SUCCEEDED ? undefined : `task ended ${TaskStatus[done.status]}: ${done.lastError}`;
  });

  await check("statement timeout turned off from inside the query", async () => {
    const sql = "select case when g = 1 then set_config('statement_timeout', '0', false) else pg_sleep(case when g > 1000 then 1 else 0 end)::text end from generate_series(1, 1200) g";
    const { task } = await client.createTask({ name: "probe statement timeout", type: "run_query", parameters: { sql }, maxAttempts: 1, timeout: { seconds: 600n, nanos: 0 } });
    const done = await finish(task);
    return done.status === TaskStatus.FAILED && /statement timeout/.test(done.lastError) ? undefined : `task ended ${TaskStatus[done.status]}: ${done.lastError}`;
  });

  await check("idle, silent, half-sent and HTTP/2-preface-only connections", async () => {
    const sockets = await Promise.all(Array.from({ length: 200 }, () => connect(url)));
    sockets.slice(0, 50).forEach((s) => s.write("POST /task.v1.TaskService/ListTasks HTTP/1.1\r\nHost: 127.0.0.1\r\n"));
    sockets.slice(50, 100).forEach((s) => s.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    sockets.slice(100, 150).forEach((s) => s.write("POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{"));
    const deadline = Date.now() + 90_000;
    while (sockets.some((s) => !s.destroyed) && Date.now() < deadline) await sleep(200);
    const open = sockets.filter((s) => !s.destroyed).length;
    for (const s of sockets) s.destroy();
    return open === 0 ? undefined : `${open} of 200 stalled connections still open after 90 s`;
  });

  await check("huge list filters: 70,000 types, 3 million statuses", async () => {
    // Each call's outcome is taken as it settles (all three run at once), so none rejects unobserved.
    const codeOf = (call: Promise<unknown>) => call.then(() => undefined, (err: unknown) => ConnectError.from(err).code);
    const codes = await Promise.all([
      codeOf(client.listTasks({ types: Array.from({ length: 70_000 }, (_, i) => `type${i}`) })),
      codeOf(grpc.listTasks({ statuses: new Array<TaskStatus>(3_000_000).fill(TaskStatus.FAILED) })),
      codeOf(grpc.listTasks({ statuses: new Array<TaskStatus>(3_000_000).fill(TaskStatus.FAILED) })),
    ]);
    const wrong = codes.find((code) => code !== Code.InvalidArgument);
    return codes.every((code) => code === Code.InvalidArgument) ? undefined : `expected InvalidArgument, got ${wrong === undefined ? "success" : Code[wrong]}`;
  });

  await check("unknown status name in JSON", async () => {
    const res = await fetch(`${address}/task.v1.TaskService/ListTasks`, { method: "POST", headers: { "content-type": "application/json", ...(options.token ? { authorization: `Bearer ${options.token}` } : {}) }, body: '{"statuses":["FAILED"]}' });
    return res.status === 400 ? undefined : `answered ${res.status}`;
  });

  await check("2,000 unauthenticated health Watch streams and 50 concurrent /metrics scrapes", async () => {
    const controller = new AbortController();
    setMaxListeners(0, controller.signal); // one signal for all 2,000 streams
    const sessions = Array.from({ length: 20 }, () => createClient(Health, createGrpcTransport({ baseUrl: address, defaultTimeoutMs })));
    // One call each first, so every connection is up before the flood.
    await Promise.all(sessions.map((s) => s.check({ service: "" })));
    const first = await Promise.allSettled(
      Array.from({ length: 2_000 }, (_, i) => sessions[i % sessions.length]!.watch({ service: "" }, { signal: controller.signal })[Symbol.asyncIterator]().next()),
    );
    const outcomes = new Map<string, number>();
    for (const r of first) {
      const key = r.status === "fulfilled" ? "watching" : Code[ConnectError.from(r.reason).code];
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    }
    const refused = outcomes.get(Code[Code.ResourceExhausted]) ?? 0;
    const scrapes = await Promise.all(Array.from({ length: 50 }, () => fetch(`${address}/metrics`).then((r) => r.status)));
    const problem = await answering();
    controller.abort();
    if (problem) return `${problem} while watchers were open`;
    if (scrapes.some((s) => s !== 200)) return "a /metrics scrape failed";
    return refused > 0 ? undefined : `no watcher was refused (${JSON.stringify(Object.fromEntries(outcomes))}): is the watcher cap below 2,000?`;
  });

  await check("DNS rebinding: a foreign Host header", async () => {
    if (options.token) return undefined; // with tokens every RPC authenticates; any host is fine
    const status = await new Promise<number>((resolve, reject) =>
      http.get(`${address}/healthz`, { headers: { host: `attacker.example:${url.port}` } }, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on("error", reject),
    );
    return status === 403 ? undefined : `answered ${status}`;
  });

  if (options.expectShellIsolation) {
    await check("shell task reading the service's environment and files", async () => {
      const { task } = await client.createTask({ name: "probe environ", type: "shell", parameters: { command: "tr '\\0' '\\n' < /proc/$PPID/environ; cat /proc/1/environ; true" } });
      const done = await finish(task);
      const { lines } = await client.getTaskLogs({ id: done.id });
      const leaked = lines.find((l) => /DATABASE_URL|TASK_API_TOKENS/.test(l.line));
      return leaked ? `a shell task read: ${leaked.line.slice(0, 40)}...` : undefined;
    });
    await check("shell task leaving a process behind with setsid", async () => {
      const { task } = await client.createTask({ name: "probe setsid", type: "shell", parameters: { command: "(setsid sleep 7771 &); true" } });
      await finish(task);
      await sleep(1_000);
      // Looked for from outside: inside a task's PID namespace a later task could not see it. (So this
      // check needs the server on this machine, as in CI.)
      return (await processesMatching("sleep 7771")).length > 0 ? "sleep 7771 outlived its task" : undefined;
    });
  }

  return results;
}

/** Pids of this machine's processes whose command line contains `needle`. */
async function processesMatching(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmdline.replaceAll("\0", " ").includes(needle)) pids.push(Number(entry));
  }
  return pids;
}

async function waitForTask(client: Client<typeof TaskService>, id: bigint, timeoutMs: number): Promise<Task> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { task } = await client.getTask({ id });
    if (task && terminal.has(task.status)) return task;
    if (Date.now() > deadline) throw new Error(`task ${id} did not finish within ${timeoutMs} ms`);
    await sleep(250);
  }
}

function connect(url: URL): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname, () => resolve(socket));
    // Read (and drop) what arrives, so the server's FIN is seen and the socket ends.
    socket.resume();
    socket.on("error", (err) => (socket.connecting ? reject(err) : undefined));
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const args = process.argv.slice(2);
  const address = args.find((a) => a.startsWith("http"));
  if (!address) {
    console.error("usage: tsx scripts/probe.ts http://host:port [--token T] [--shell-isolation]");
    process.exit(2);
  }
  const tokenAt = args.indexOf("--token");
  const results = await probe(address, { token: tokenAt >= 0 ? args[tokenAt + 1] : undefined, expectShellIsolation: args.includes("--shell-isolation"), log: (l) => console.log(l) });
  const failed = results.filter((r) => !r.ok);
  console.log(failed.length === 0 ? `all ${results.length} probes held` : `${failed.length} of ${results.length} probes failed`);
  process.exit(failed.length === 0 ? 0 : 1);
}
