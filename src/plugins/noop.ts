import { setTimeout as sleep } from "node:timers/promises";
import { noopParameters } from "./schemas.js";
import type { Plugin } from "./types.js";

/** Waits sleep_ms (abortably), then succeeds, or fails with `fail`. For demos and benchmarks. */
export const noopPlugin: Plugin<typeof noopParameters> = {
  name: "noop",
  description: "Does nothing for sleep_ms, then succeeds (or fails with `fail`); for demos and benchmarks.",
  parameters: noopParameters,
  defaults: { timeoutMs: 60_000, maxAttempts: 3 },
  async run(params, ctx) {
    if (params.sleep_ms > 0) await sleep(params.sleep_ms, undefined, { signal: ctx.signal });
    if (params.fail) throw new Error(params.fail);
    return { slept_ms: params.sleep_ms };
  },
};
