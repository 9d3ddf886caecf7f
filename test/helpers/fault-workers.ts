import { readdirSync, readFileSync } from "node:fs";
import type pg from "pg";
import { spawnCli, type CliProcess } from "./process.js";
import { waitFor } from "./wait.js";

/** Settings for worker processes in fault tests: a short lease and quick checks, as in the chaos run. */
export const faultWorkerEnv = {
  TASK_ENABLE_SHELL: "true",
  TASK_LEASE_MS: "3000",
  TASK_HEARTBEAT_MS: "300",
  TASK_RECONCILE_INTERVAL_MS: "1000",
  TASK_BACKOFF_BASE_MS: "100",
  TASK_BACKOFF_MAX_MS: "1000",
  TASK_POLL_INTERVAL_MS: "300",
  TASK_SHUTDOWN_GRACE_MS: "2000",
  LOG_LEVEL: "warn",
};

/** A `task-cli serve` process, registered once its liveness lock is held. */
export async function startWorkerProcess(pool: pg.Pool, databaseUrl: string, env: Record<string, string> = {}, args: string[] = ["-n", "4"]): Promise<CliProcess> {
  const worker = spawnCli(["serve", ...args], { DATABASE_URL: databaseUrl, ...faultWorkerEnv, ...env });
  const pid = worker.child.pid!;
  await waitFor(
    async () => {
      const exited = worker.child.exitCode !== null || worker.child.signalCode !== null;
      if (exited) throw new Error(`worker exited early: ${worker.output()}`);
      return (await pool.query("select 1 from workers where id like $1 and lock_key is not null", [`%-${pid}-%`])).rowCount === 1;
    },
    `worker ${pid} to register`,
    60_000,
  );
  return worker;
}

/** The pid of the worker process running a task now (worker ids are host-pid-random). */
export async function runningOn(pool: pg.Pool, taskId: bigint | string): Promise<number | undefined> {
  const { rows } = await pool.query("select worker_id from tasks where id = $1 and status = 'running'", [String(taskId)]);
  const id = rows[0]?.worker_id as string | undefined;
  return id ? Number(id.split("-").at(-2)) : undefined;
}

/** Whether a spawned process is still running. */
export function alive(p: CliProcess): boolean {
  return p.child.exitCode === null && p.child.signalCode === null;
}

/** One attempt's processes, as seen by a ProcessWatch. */
export interface SeenAttempt {
  taskId: string;
  attempt: number;
  first: number;
  last: number;
}

/**
 * Watches, every 25 ms, which task attempts have a `sleep <marker>` process alive (read from each
 * process's TASK_ID and TASK_ATTEMPT; the tests run as root, so every environ is readable). Two
 * attempts of one task seen alive in the same scan are two copies at once.
 */
export class ProcessWatch {
  private readonly seen = new Map<string, SeenAttempt>();
  readonly overlaps: string[] = [];
  private readonly timer: NodeJS.Timeout;

  private readonly markers: Set<string>;

  constructor(markers: string | string[]) {
    this.markers = new Set((typeof markers === "string" ? [markers] : markers).map((m) => `sleep ${m}`));
    this.timer = setInterval(() => this.scan(), 25);
  }

  /** One look at /proc; returns how many marked processes are alive. */
  private scan(): number {
    const now = Date.now();
    let count = 0;
    const live = new Map<string, Set<number>>();
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").replaceAll("\0", " ").trim();
        if (!this.markers.has(cmdline)) continue;
        const env = new Map(
          readFileSync(`/proc/${entry}/environ`, "utf8")
            .split("\0")
            .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)] as const),
        );
        count++;
        const taskId = env.get("TASK_ID")!;
        const attempt = Number(env.get("TASK_ATTEMPT"));
        const key = `${taskId}:${attempt}`;
        const s = this.seen.get(key) ?? { taskId, attempt, first: now, last: now };
        s.last = now;
        this.seen.set(key, s);
        const attempts = live.get(taskId) ?? new Set<number>();
        attempts.add(attempt);
        live.set(taskId, attempts);
      } catch {
        // exited while we looked
      }
    }
    for (const [taskId, attempts] of live) {
      if (attempts.size > 1) this.overlaps.push(`task ${taskId}: attempts ${[...attempts].join(", ")} alive at once`);
    }
    return count;
  }

  /** Every attempt seen so far. */
  attempts(): SeenAttempt[] {
    return [...this.seen.values()];
  }

  /** Whether any process with the marker is alive right now. */
  anyAlive(): boolean {
    return this.scan() > 0;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
