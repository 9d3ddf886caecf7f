import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { probe } from "../scripts/probe.js";
import { spawnCli, type CliProcess } from "./helpers/process.js";
import { waitFor } from "./helpers/wait.js";

let dataDir: string;
let proc: CliProcess | undefined;
let address: string;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), "task-probe-"));
  proc = spawnCli(["up", "--port", "0", "--data-dir", dataDir, "--enable-shell", "--workers", "2"], {
    LOG_LEVEL: "warn",
    // Short limits, so stalled connections and runaway statements end within the test.
    TASK_HTTP_HEADERS_TIMEOUT_MS: "1000",
    TASK_HTTP_REQUEST_TIMEOUT_MS: "2000",
    // Long enough that a loaded machine opening 2,000 streams is not mistaken for an idle client.
    TASK_HTTP2_IDLE_TIMEOUT_MS: "15000",
    TASK_QUERY_STATEMENT_TIMEOUT_MS: "10000",
    TASK_MAX_HEALTH_WATCHERS: "500",
  });
  address = await waitFor(() => /listening on (http:\S+)/.exec(proc!.output())?.[1], "up to print its address", 90_000);
}, 120_000);

afterAll(async () => {
  if (proc && proc.child.exitCode === null) {
    proc.child.kill("SIGTERM");
    await proc.exited;
  }
  await rm(dataDir, { recursive: true, force: true });
});

describe("scripts/probe.ts against `task-cli up`", () => {
  it("the service stays up and answering through every attack", async () => {
    const died = proc!.exited.then((code) => {
      throw new Error(`task-cli up exited (${code}) during the probe:\n${proc!.output().slice(-2_000)}`);
    });
    const results = await Promise.race([probe(address, { expectShellIsolation: true }), died]);
    const failed = results.filter((r) => !r.ok).map((r) => `${r.name}: ${r.detail}`);
    expect(failed, failed.join("\n")).toEqual([]);
    expect(results.length).toBeGreaterThanOrEqual(8);
    expect(proc!.child.exitCode, proc!.output().slice(-2_000)).toBeNull();
  }, 400_000);
});
