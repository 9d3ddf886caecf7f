import { useState } from "react";
import { useLocation } from "wouter";

/**
 * A list view's filters and page, kept in the URL (`path?<search>`), for lists paged by cursor:
 * `go` navigates to another search, `filter` changes filters and starts again from the newest
 * page, and `previous` holds the cursors of the pages before this one (for CursorPager's "Newer";
 * after a reload only "Newest" can go back).
 */
export function useCursorSearch<S extends { cursor: string }>(path: string, search: S, toQuery: (search: S) => string) {
  const [, navigate] = useLocation();
  const [previous, setPrevious] = useState<string[]>([]);
  const go = (next: S, opts: { keepPrevious?: boolean } = {}) => {
    const qs = toQuery(next);
    if (qs === toQuery(search)) return;
    if (!opts.keepPrevious) setPrevious([]);
    navigate(qs ? `${path}?${qs}` : path);
  };
  const filter = (change: Partial<S>) => go({ ...search, ...change, cursor: "" });
  /** CursorPager's props for this search and the page's next token. */
  const pager = (nextPageToken: string) => ({
    cursor: search.cursor,
    nextPageToken,
    previous,
    setPrevious,
    goTo: (cursor: string, keepPrevious: boolean) => go({ ...search, cursor }, { keepPrevious }),
  });
  return { go, filter, pager };
}
