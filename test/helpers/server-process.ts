import { afterAll, beforeAll } from "vitest";
import { createTestDatabase, type TestDatabase } from "./database.js";
import { spawnCli, type CliProcess } from "./process.js";
import { waitFor } from "./wait.js";

/** A `task-cli server` (or `serve`) child process on a test database. */
export interface ServerProcess {
  proc: CliProcess;
  /** The API address (empty for `serve`). */
  url: string;
  /** SIGKILL: no shutdown at all, as a crash. */
  kill(): Promise<void>;
  /** SIGTERM, then SIGKILL if it lingers. */
  stop(): Promise<void>;
}

/** Starts `task-cli server --port 0` (or other args) and waits for its address. */
export async function startServerProcess(databaseUrl: string, args: string[] = ["server", "--port", "0"], env: Record<string, string> = {}): Promise<ServerProcess> {
  const proc = spawnCli(args, { DATABASE_URL: databaseUrl, LOG_LEVEL: "info", ...env });
  const url =
    args[0] === "serve"
      ? (await waitFor(() => proc.output().includes(`"msg":"workers started"`) || undefined, "the worker to start", 60_000), "")
      : await waitFor(() => /"url":"(https?:\/\/[^"]+)"[^\n]*"msg":"API listening"/.exec(proc.output())?.[1], "the server to listen", 60_000);
  const exitedOr = async (signal: NodeJS.Signals, ms: number) => {
    proc.child.kill(signal);
    return Promise.race([proc.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
  };
  return {
    proc,
    url,
    async kill() {
      await exitedOr("SIGKILL", 10_000);
    },
    async stop() {
      if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
      if (!(await exitedOr("SIGTERM", 15_000))) await exitedOr("SIGKILL", 10_000);
    },
  };
}

/** Server processes on a database of their own, for a whole test file. */
export interface ServerProcesses {
  /** The file's database (set before the first test). */
  readonly database: TestDatabase;
  /** Starts a process (as startServerProcess) that is killed after the file's tests. */
  start(args?: string[], env?: Record<string, string>): Promise<ServerProcess>;
}

/**
 * Registers the hooks of a file whose tests run `task-cli` processes: a fresh database before the
 * tests, every process it started killed and the database dropped after them.
 */
export function useServerProcesses(): ServerProcesses {
  let database: TestDatabase | undefined;
  const started: ServerProcess[] = [];
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await Promise.all(started.map((p) => p.kill()));
    await database?.drop();
  });
  return {
    get database() {
      if (!database) throw new Error("useServerProcesses: the database exists once the file's tests start");
      return database;
    },
    async start(args, env) {
      const p = await startServerProcess(this.database.url, args, env);
      started.push(p);
      return p;
    },
  };
}
