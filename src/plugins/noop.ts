import { setTimeout as sleep } from "node:timers/promises";
import { noopParameters } from "./schemas.js";
import type { Plugin } from "./types.js";

/**
 * Waits sleep_ms (abortably), reporting progress progress_steps times on the way, then succeeds, or
 * fails with `fail`. For demos and benchmarks.
 */
export const noopPlugin: Plugin<typeof noopParameters> = {
  name: "noop",
  description: "Does nothing for sleep_ms, then succeeds (or fails with `fail`); for demos and benchmarks.",
  parameters: noopParameters,
  defaults: { timeoutMs: 60_000, maxAttempts: 3 },
  async run(params, ctx) {
    const steps = params.progress_steps ?? 0;
    for (let i = 1; i <= steps; i++) {
      if (params.sleep_ms > 0) await sleep(params.sleep_ms / steps, undefined, { signal: ctx.signal });
      ctx.progress?.(i / steps, `step ${i} of ${steps}`);
    }
    if (steps === 0 && params.sleep_ms > 0) await sleep(params.sleep_ms, undefined, { signal: ctx.signal });
    if (params.fail) throw new Error(params.fail);
    return { slept_ms: params.sleep_ms };
  },
};
