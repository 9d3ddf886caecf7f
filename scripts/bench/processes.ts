/**
 * The processes the benchmark measures: `task-cli server` and `task-cli serve -n N` as the operator
 * runs them (the compiled build when it is fresh, see bin/task-cli.js), and the bare Connect INSERT
 * server (bare-insert-server.ts). Each is stopped by its own pid.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { cliNodeFlags } from "../../bin/node-flags.js";

/** The repository's root (this checkout). */
export const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const root = repoRoot;
/** The CLI entry point operators run. */
export const cliPath = path.join(root, "bin/task-cli.js");

/** A child process the benchmark started. */
export interface BenchProcess {
  child: ChildProcess;
  exited: Promise<unknown>;
  /** Peak resident set size so far (VmHWM), in MB; read it before stopping the process. */
  peakRssMb(): Promise<number>;
  stop(): Promise<void>;
}

/** A free TCP port on loopback (closed again: the child binds it a moment later). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function wrap(child: ChildProcess): BenchProcess {
  const exited = new Promise((resolve) => child.once("exit", resolve));
  return {
    child,
    exited,
    async peakRssMb() {
      const status = await readFile(`/proc/${child.pid}/status`, "utf8");
      const kb = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? Number.NaN);
      return kb / 1024;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Environment for the service's processes: quiet, and nothing of the bench's own environment. */
function serviceEnv(databaseUrl: string, extra: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: databaseUrl, LOG_LEVEL: "error", ...extra };
}

async function until(probe: () => Promise<boolean>, what: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await probe())) {
    if (child.exitCode !== null) throw new Error(`${what}: the process exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** `task-cli server` on a free port, once it answers /readyz. */
export async function startServerProcess(databaseUrl: string, dataDir: string, extraEnv: Record<string, string> = {}): Promise<BenchProcess & { url: string }> {
  const port = await freePort();
  const child = spawn(process.execPath, [...cliNodeFlags(), cliPath, "server"], {
    env: serviceEnv(databaseUrl, { ...extraEnv, TASK_PORT: String(port), TASK_DATA_DIR: dataDir }),
    stdio: ["ignore", "ignore", "inherit"],
  });
  const url = `http://127.0.0.1:${port}`;
  await until(async () => (await fetch(`${url}/readyz`).catch(() => undefined))?.ok === true, "the API server to be ready", child);
  return { ...wrap(child), url };
}

/** `task-cli serve -n <concurrency>` (of `cli`: another release's, tracing-cost.ts), once its workers are registered (liveness lock held). */
export async function startServeProcess(
  databaseUrl: string,
  dataDir: string,
  concurrency: number,
  registered: (pid: number) => Promise<boolean>,
  extraEnv: Record<string, string> = {},
  cli = cliPath,
): Promise<BenchProcess> {
  const child = spawn(process.execPath, [...cliNodeFlags(), cli, "serve", "-n", String(concurrency)], {
    env: serviceEnv(databaseUrl, { ...extraEnv, TASK_DATA_DIR: dataDir }),
    stdio: ["ignore", "ignore", "inherit"],
  });
  await until(() => registered(child.pid!), "the worker process to register", child);
  return wrap(child);
}

/** The bare Connect INSERT server (bare-insert-server.ts, through tsx), once it prints its address. */
export async function startBareInsertServer(databaseUrl: string, poolSize: number): Promise<BenchProcess & { url: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(root, "scripts/bench/bare-insert-server.ts")], {
    cwd: root,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: databaseUrl, POOL_SIZE: String(poolSize) },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const match = /listening on (\S+)/.exec(out);
      if (match) resolve(match[1]!);
    });
    child.once("exit", (code) => reject(new Error(`the bare INSERT server exited with ${code}`)));
  });
  return { ...wrap(child), url };
}
