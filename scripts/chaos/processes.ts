import { spawn, type ChildProcess } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/task-cli.js");

/** Settings that make the chaos run converge quickly: short lease, frequent checks, quick retries. */
export const chaosEnv = {
  TASK_ENABLE_SHELL: "true",
  TASK_LEASE_MS: "3000",
  TASK_HEARTBEAT_MS: "500",
  TASK_RECONCILE_INTERVAL_MS: "1000",
  TASK_BACKOFF_BASE_MS: "100",
  TASK_BACKOFF_MAX_MS: "2000",
  TASK_POLL_INTERVAL_MS: "500",
  TASK_SHUTDOWN_GRACE_MS: "3000",
  LOG_LEVEL: "error",
};

/** The server and worker processes of a chaos run. */
export class ChaosProcesses {
  private server: ChildProcess | undefined;
  private readonly workers = new Set<ChildProcess>();
  private stopping = false;
  /** Set when the server died on its own: the run cannot finish, so it should stop at once. */
  serverDied: string | undefined;

  constructor(
    private readonly databaseUrl: string,
    private readonly concurrency: number,
  ) {}

  private spawn(args: string[]): ChildProcess {
    return spawn(process.execPath, [cli, ...args], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: this.databaseUrl, ...chaosEnv },
      stdio: ["ignore", "pipe", "inherit"],
    });
  }

  /** Starts the API server alone and resolves with its address. */
  startServer(): Promise<string> {
    const server = this.spawn(["up", "--workers", "0", "--port", "0"]);
    this.server = server;
    return new Promise((resolve, reject) => {
      let out = "";
      server.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        const match = /listening on (http:\S+)/.exec(out);
        if (match) resolve(match[1]!);
      });
      server.once("exit", (code, signal) => {
        if (!this.stopping) this.serverDied = `the server exited (${code ?? signal})`;
        reject(new Error(`server exited with ${code ?? signal}`));
      });
    });
  }

  /** Starts one more worker process. */
  startWorker(): void {
    const worker = this.spawn(["serve", "-n", String(this.concurrency)]);
    worker.stdout!.resume();
    this.workers.add(worker);
    worker.once("exit", () => this.workers.delete(worker));
  }

  /**
   * kill -9 of a random live worker that is running attempts (so the kill tests a rescue, not a
   * process that had not started yet); after `patienceMs` without one, of any live worker.
   * Resolves with its pid once it is gone.
   */
  async killBusyWorker(busyPids: () => Promise<Set<number>>, patienceMs = 15_000): Promise<number> {
    let candidates: ChildProcess[] = [];
    for (const until = Date.now() + patienceMs; Date.now() < until; await sleep(200)) {
      const busy = await busyPids().catch(() => new Set<number>());
      candidates = [...this.workers].filter((w) => w.pid !== undefined && busy.has(w.pid));
      if (candidates.length > 0) break;
    }
    if (candidates.length === 0) candidates = [...this.workers];
    const victim = candidates[Math.floor(Math.random() * candidates.length)]!;
    const gone = new Promise((resolve) => victim.once("exit", resolve));
    victim.kill("SIGKILL");
    await gone;
    return victim.pid!;
  }

  /** SIGTERM to everything, waiting for clean exits. */
  async stopAll(): Promise<void> {
    this.stopping = true;
    const all = [...this.workers, ...(this.server ? [this.server] : [])].filter((p) => p.exitCode === null);
    await Promise.all(all.map((p) => new Promise((resolve) => (p.once("exit", resolve), p.kill("SIGTERM")))));
  }

  /** SIGKILL to anything still running (cleanup after a failure). */
  async killAll(): Promise<void> {
    this.stopping = true;
    for (const p of [...this.workers, ...(this.server ? [this.server] : [])]) if (p.exitCode === null) p.kill("SIGKILL");
  }
}
