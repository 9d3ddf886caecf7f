import pg from "pg";
import { Backoff, sleep } from "../backoff.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Channel } from "./channels.js";
import { connectClient } from "./db.js";

/** A subscription's callbacks. */
interface Subscriber {
  onPayload: (payload: string) => void;
  onListening?: () => void;
}

/** A process's one LISTEN connection, shared by everything in it that waits for notifications. */
export interface Listener {
  /**
   * Calls `onPayload` for each notification on `channel`, and `onListening` each time the
   * subscription starts listening: once LISTEN is in effect, and again after every reconnection
   * (notifications sent while disconnected are lost: it is the subscriber's cue to look again).
   * Returns the function that ends the subscription.
   */
  subscribe(channel: Channel, onPayload: (payload: string) => void, onListening?: () => void): () => void;
  /** Closes the connection; no callback runs after it resolves. */
  close(): Promise<void>;
}

/** Reconnection waits: PostgreSQL restarting takes seconds; a lost notification costs a subscriber's fallback. */
const RECONNECT_BACKOFF = { baseMs: 250, maxMs: 5_000 };

/**
 * Opens a process's listener: ONE dedicated connection carrying every channel its parts subscribe
 * to (each connection is one of PostgreSQL's max_connections slots, for every process), reconnecting
 * with backoff when PostgreSQL goes away and LISTENing again on every channel. `name` ends up in
 * pg_stat_activity's application_name.
 */
export function openListener(connectionString: string, logger: Logger, name = "task-service listener"): Listener {
  const subscribers = new Map<Channel, Set<Subscriber>>();
  let stopped = false;
  /** Ends a reconnection wait at close. */
  const closing = new AbortController();
  let client: pg.Client | undefined;
  /** The channels LISTENed on the current connection, and whether it is ready for more (the first LISTEN done). */
  let listened = new Set<Channel>();
  let ready = false;
  /** LISTENs are issued one statement at a time, in order, on the current connection. */
  let syncing: Promise<void> = Promise.resolve();

  const started = (subs: Iterable<Subscriber>) => {
    for (const sub of subs) {
      try {
        sub.onListening?.();
      } catch (err) {
        logger.error({ err: errorMessage(err) }, "a notification subscriber's reconnect handler failed");
      }
    }
  };

  /** LISTENs on every subscribed channel the connection does not listen on yet, then tells their subscribers. */
  const sync = async (c: pg.Client) => {
    for (;;) {
      const missing = [...subscribers.keys()].filter((channel) => !listened.has(channel));
      if (missing.length === 0 || c !== client || stopped) return;
      await c.query(missing.map((channel) => `LISTEN ${c.escapeIdentifier(channel)}`).join("; "));
      if (c !== client) return;
      for (const channel of missing) {
        listened.add(channel);
        started(subscribers.get(channel) ?? []);
      }
    }
  };
  const syncLater = (c: pg.Client) => {
    syncing = syncing.then(() => sync(c)).catch((err: unknown) => {
      // The connection is failing: its error or end handler reconnects, and LISTENs everything again.
      if (!stopped) logger.warn({ err: errorMessage(err) }, "cannot LISTEN; the listener reconnects");
    });
  };

  const loop = async () => {
    const reconnects = new Backoff(RECONNECT_BACKOFF);
    while (!stopped) {
      const c = new pg.Client({ connectionString, application_name: name, keepAlive: true });
      client = c;
      listened = new Set();
      ready = false;
      try {
        const ended = new Promise<void>((resolve) => {
          c.once("error", (err) => {
            if (!stopped) logger.warn({ err: err.message }, "listener connection lost");
            resolve();
          });
          c.once("end", () => resolve());
        });
        await connectClient(c);
        c.on("notification", (msg) => {
          for (const sub of subscribers.get(msg.channel as Channel) ?? []) {
            try {
              sub.onPayload(msg.payload ?? "");
            } catch (err) {
              logger.error({ channel: msg.channel, err: errorMessage(err) }, "a notification handler failed");
            }
          }
        });
        await sync(c);
        ready = true;
        reconnects.succeeded();
        // Subscriptions made while the first LISTEN was in flight.
        syncLater(c);
        await ended;
      } catch (err) {
        if (!stopped) logger.warn({ err: errorMessage(err) }, "cannot LISTEN; retrying");
      }
      ready = false;
      await c.end().catch(() => undefined);
      if (!stopped) await sleep(reconnects.failed(), closing.signal);
    }
  };
  const done = loop();

  return {
    subscribe(channel, onPayload, onListening) {
      const sub: Subscriber = { onPayload, onListening };
      const set = subscribers.get(channel) ?? new Set();
      subscribers.set(channel, set);
      set.add(sub);
      if (ready && client) {
        // Already listening on the channel: this subscriber starts now; otherwise once its LISTEN is done.
        if (listened.has(channel)) queueMicrotask(() => !stopped && set.has(sub) && started([sub]));
        else syncLater(client);
      }
      return () => {
        set.delete(sub);
        // The LISTEN stays in effect (one more statement would buy nothing): its notifications reach no one.
        if (set.size === 0 && subscribers.get(channel) === set) subscribers.delete(channel);
      };
    },
    async close() {
      stopped = true;
      closing.abort();
      subscribers.clear();
      await client?.end().catch(() => undefined);
      await done;
      await syncing;
    },
  };
}
