import http from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { z } from "zod";
import { startAgent } from "../src/agent/agent.js";
import { createLogger } from "../src/logger.js";
import { PluginRegistry } from "../src/plugins/registry.js";
import type { Plugin } from "../src/plugins/types.js";
import { definePlugin } from "../src/sdk/plugin.js";
import { waitFor } from "./helpers/wait.js";

// A control plane that accepts the connection and the request but never answers (a network that
// drops packets past the handshake): Register must give up at its deadline so the reconnection
// loop tries again (here: the same, only address), rather than wait until the connection closes.

let silent: http.Server;
let url: string;
const registers: number[] = [];
beforeAll(async () => {
  silent = http.createServer((req) => {
    if (req.url?.endsWith("/Register")) registers.push(Date.now());
    // Never answered; the socket stays open.
  });
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
});
afterAll(async () => {
  silent.closeAllConnections();
  await new Promise((resolve) => silent.close(resolve));
});

it("Register gives up at its deadline and the agent tries again", async () => {
  const noop = definePlugin({ name: "noop_deadline", description: "Nothing", parameters: z.object({}), run: async () => ({}) }) as unknown as Plugin;
  const agent = startAgent({
    server: url,
    name: "deadline",
    registry: new PluginRegistry<Plugin>([noop]),
    slots: 1,
    spoolDir: mkdtempSync(path.join(os.tmpdir(), "agent-spool-")),
    callTimeoutMs: 300,
    logger: createLogger("fatal"),
  });
  try {
    await waitFor(() => registers.length >= 2, "a second Register after the first went unanswered", 10_000);
    expect(agent.agentId).toBeUndefined();
  } finally {
    await agent.stop();
  }
}, 30_000);
