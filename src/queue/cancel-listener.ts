import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import { CANCEL_CHANNEL } from "../store/transitions.js";

/**
 * Listens for cancellation requests (NOTIFY task_cancel, payload = task id) on a dedicated
 * connection, reconnecting with backoff when PostgreSQL goes away. Notifications missed while
 * disconnected are caught by the heartbeat, which also reports pending cancellations.
 */
export function listenForCancellations(connectionString: string, logger: Logger, onCancel: (taskId: string) => void): { close(): Promise<void> } {
  let stopped = false;
  let client: pg.Client | undefined;
  const loop = async () => {
    for (let wait = 500; !stopped; wait = Math.min(wait * 2, 10_000)) {
      const c = new pg.Client({ connectionString, application_name: "task-service cancel listener" });
      client = c;
      try {
        const ended = new Promise<void>((resolve) => {
          c.once("error", (err) => {
            logger.warn({ err: err.message }, "cancel listener connection lost");
            resolve();
          });
          c.once("end", () => resolve());
        });
        await c.connect();
        c.on("notification", (msg) => msg.payload && onCancel(msg.payload));
        await c.query(`LISTEN ${CANCEL_CHANNEL}`);
        wait = 500;
        await ended;
      } catch (err) {
        if (!stopped) logger.warn({ err: errorMessage(err) }, "cancel listener cannot connect; retrying");
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
