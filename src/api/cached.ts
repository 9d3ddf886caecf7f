/**
 * Wraps an async function so callers within `ttlMs` of a result share it, and concurrent callers
 * share one call in flight: for scrape-time and probe-time reads that anyone may trigger.
 * A failure is not cached.
 */
export function cachedFor<T>(ttlMs: number, load: () => Promise<T>): () => Promise<T> {
  let value: { at: number; promise: Promise<T> } | undefined;
  return () => {
    const now = Date.now();
    if (value && now - value.at < ttlMs) return value.promise;
    const promise = load();
    const entry = { at: now, promise };
    value = entry;
    promise.catch(() => {
      if (value === entry) value = undefined;
    });
    return promise;
  };
}
