/**
 * TEST ONLY: a worker process whose registry has, besides the built-in plugins, `memory_hog`, a
 * plugin that really exhausts the V8 heap (start it with a small --max-old-space-size), so the
 * poison-task test can kill a worker the way an out-of-memory task does. Never part of the product.
 *   node --max-old-space-size=96 --import tsx test/helpers/memory-hog-worker.ts
 * Configured by the environment like `task-cli serve` (DATABASE_URL, TASK_*).
 */
import { z } from "zod";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { builtinPlugins } from "../../src/plugins/builtin.js";
import { PluginRegistry } from "../../src/plugins/registry.js";
import type { Plugin } from "../../src/plugins/types.js";
import { startWorkers } from "../../src/worker/runner.js";

const memoryHog: Plugin = {
  name: "memory_hog",
  description: "Test only: allocates until the process runs out of heap.",
  parameters: z.object({}).strict(),
  defaults: { timeoutMs: 120_000, maxAttempts: 3 },
  async run(_params, ctx) {
    const kept: number[][] = [];
    for (;;) {
      kept.push(new Array(1 << 18).fill(ctx.attempt));
      await new Promise((resolve) => setImmediate(resolve));
    }
  },
};

const config = loadConfig();
const logger = createLogger(config.logLevel);
const builtin = builtinPlugins(config, logger);
const registry = new PluginRegistry([...builtin.registry.list(), memoryHog]);
const workers = await startWorkers({ databaseUrl: config.databaseUrl!, registry, config, logger });
process.stdout.write(`memory-hog worker ${workers.workerId} started\n`);
process.once("SIGTERM", () => void workers.stop().then(() => builtin.close()).then(() => process.exit(0)));
