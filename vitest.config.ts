import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "src/**/*.test.ts", "ui/src/**/*.test.{ts,tsx}", "examples/*/test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Every file gets its own database cloned from a migrated template, so files can run in parallel.
    fileParallelism: true,
  },
});
