import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";

/**
 * LISTENs on a channel on a dedicated connection and calls `onPayload` for each notification,
 * reconnecting with backoff when PostgreSQL goes away. Notifications sent while disconnected are
 * lost, so every user has a fallback (workers' heartbeats report pending cancels; watchers poll).
 */
export function listen(
  connectionString: string,
  channel: string,
  logger: Logger,
  onPayload: (payload: string) => void,
  /** Called each time LISTEN is (re-)established: notifications sent before it were missed. */
  onListening?: () => void,
): { close(): Promise<void> } {
  let stopped = false;
  let client: pg.Client | undefined;
  const loop = async () => {
    for (let wait = 500; !stopped; wait = Math.min(wait * 2, 10_000)) {
      const c = new pg.Client({ connectionString, application_name: `task-service listen ${channel}` });
      client = c;
      try {
        const ended = new Promise<void>((resolve) => {
          c.once("error", (err) => {
            logger.warn({ channel, err: err.message }, "listen connection lost");
            resolve();
          });
          c.once("end", () => resolve());
        });
        await c.connect();
        c.on("notification", (msg) => msg.payload && onPayload(msg.payload));
        await c.query(`LISTEN ${c.escapeIdentifier(channel)}`);
        onListening?.();
        wait = 500;
        await ended;
      } catch (err) {
        if (!stopped) logger.warn({ channel, err: errorMessage(err) }, "cannot LISTEN; retrying");
      }
      await c.end().catch(() => undefined);
      if (!stopped) await sleep(wait);
    }
  };
  const done = loop();
  return {
    async close() {
      stopped = true;
      await client?.end().catch(() => undefined);
      await done;
    },
  };
}
