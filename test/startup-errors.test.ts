import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmbeddedPostgres } from "../src/embedded-postgres.js";
import { createLogger } from "../src/logger.js";
import { spawnCli } from "./helpers/process.js";

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), "task-startup-"));
});
afterAll(async () => rm(scratch, { recursive: true, force: true }));

describe("start-up errors say what is wrong before doing any work", () => {
  it("`up` on a port in use fails with a clear message without starting PostgreSQL", async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const { port } = taken.address() as net.AddressInfo;
    const dataDir = path.join(scratch, "port-taken");
    try {
      const proc = spawnCli(["up", "--port", String(port), "--data-dir", dataDir], { LOG_LEVEL: "warn" });
      expect(await proc.exited).toBe(1);
      expect(proc.output()).toContain(`error: port ${port} on 127.0.0.1 is already in use`);
      expect(proc.output()).toContain("--port");
      // Nothing was initialised: the check came before the embedded PostgreSQL.
      expect(existsSync(path.join(dataDir, "pgdata"))).toBe(false);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it.skipIf(process.getuid?.() !== 0)("as root, a data directory the postgres user cannot reach is named, with the fix", async () => {
    const locked = path.join(scratch, "locked");
    await mkdir(locked, { mode: 0o700 });
    await chmod(locked, 0o700);
    const dataDir = path.join(locked, "data");
    await expect(startEmbeddedPostgres(dataDir, createLogger("silent"))).rejects.toThrow(
      `runs as the "postgres" user (PostgreSQL refuses to run as root), which cannot enter ${locked} (mode 0700)`,
    );
    await expect(startEmbeddedPostgres(dataDir, createLogger("silent"))).rejects.toThrow(`chmod o+x ${locked}`);
  });
});
