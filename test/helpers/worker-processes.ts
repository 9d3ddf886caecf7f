import { afterAll, beforeAll } from "vitest";
import { startTestApi, type TestApi } from "./api.js";
import { alive, startWorkerProcess } from "./fault-workers.js";
import type { CliProcess } from "./process.js";

/** What useWorkerProcesses gives a test file; `api` is set before its tests run. */
export interface WorkerProcessSuite {
  api: TestApi;
  /** Starts a worker process (task-cli serve) against the suite's database and waits until it has registered. */
  start(env?: Record<string, string>, args?: string[]): Promise<CliProcess>;
  /** Stops every worker process started so far: SIGTERM, then waits for each to exit. */
  stopAll(): Promise<void>;
}

/**
 * A test API (real HTTP, its own database) and the real worker processes a test file starts against
 * it. After the file, any process still running is killed (SIGKILL) and the API closed.
 */
export function useWorkerProcesses(): WorkerProcessSuite {
  const started: CliProcess[] = [];
  const suite: WorkerProcessSuite = {
    api: undefined as unknown as TestApi,
    async start(env = {}, args) {
      const worker = await startWorkerProcess(suite.api.database.db.pool, suite.api.database.url, env, args);
      started.push(worker);
      return worker;
    },
    async stopAll() {
      await Promise.all(
        started.splice(0).map(async (p) => {
          if (!alive(p)) return;
          p.child.kill("SIGTERM");
          await p.exited;
        }),
      );
    },
  };
  beforeAll(async () => {
    suite.api = await startTestApi();
  });
  afterAll(async () => {
    for (const p of started) if (alive(p)) p.child.kill("SIGKILL");
    await suite.api?.close();
  });
  return suite;
}
