import { useSyncExternalStore } from "react";

/** One live source (a stream or a refreshing query) that lost the server and is trying again. */
export interface Outage {
  /** Which source, e.g. "watch-task" or "api". */
  source: string;
  /** Retries so far. */
  attempt: number;
  /** When the next try starts (ms since epoch). */
  retryAt: number;
}

const outages = new Map<string, Outage>();
let snapshot: Outage[] = [];
const listeners = new Set<() => void>();

function publish(): void {
  snapshot = [...outages.values()];
  for (const listener of listeners) listener();
}

/** Marks a source as reconnecting. */
export function reportOutage(outage: Outage): void {
  outages.set(outage.source, outage);
  publish();
}

/** Marks a source as connected again. */
export function reportRecovered(source: string): void {
  if (outages.delete(source)) publish();
}

/** Sources that are reconnecting now (empty when all is well). */
export function useOutages(): Outage[] {
  return useSyncExternalStore(
    (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    () => snapshot,
  );
}

/** Delay before retry number `attempt` (from 1): exponential from 500 ms up to 10 s, with jitter so tabs do not retry in step. */
export function backoffMs(attempt: number): number {
  const base = Math.min(10_000, 500 * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}
