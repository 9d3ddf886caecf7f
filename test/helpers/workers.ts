import { loadConfig, type ConfigOverrides } from "../../src/config.js";
import type { Metrics } from "../../src/metrics.js";
import { builtinPlugins } from "../../src/plugins/builtin.js";
import { startWorkers, type Workers } from "../../src/worker/runner.js";
import { PLAYGROUND_DATABASE, urlForDatabase, type TestDatabase } from "./database.js";

/** Worker settings that make tests quick: short backoff, heartbeat and polling. */
export const fastWorkerConfig: ConfigOverrides = {
  enableShell: true,
  workerConcurrency: 4,
  backoffBaseMs: 50,
  backoffMaxMs: 400,
  heartbeatIntervalMs: 200,
  pollIntervalMs: 100,
  shutdownGraceMs: 1_000,
  shellKillGraceMs: 500,
  // Retention off unless a test turns it on: fixtures of finished tasks dated days ago must not
  // vanish when the retention cron happens to fire during a test.
  retainSucceededMs: 0,
  retainFailedMs: 0,
  retainCancelledMs: 0,
};

/** In-process workers over a test database; stop() also closes their plugins. */
export async function startTestWorkers(database: TestDatabase, overrides: ConfigOverrides = {}, metrics?: Metrics): Promise<Workers> {
  const config = loadConfig({ ...fastWorkerConfig, queryTargets: { playground: urlForDatabase(PLAYGROUND_DATABASE) }, ...overrides }, {});
  const plugins = builtinPlugins(config, database.logger);
  const workers = await startWorkers({ databaseUrl: database.url, registry: plugins.registry, config, logger: database.logger, metrics });
  return {
    ...workers,
    async stop() {
      await workers.stop();
      await plugins.close();
    },
  };
}
