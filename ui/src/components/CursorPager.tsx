import type { ReactNode } from "react";

/**
 * Newest / Newer / Older over a list paged by cursor (page_token), newest first. The route keeps
 * the cursors it came through (`previous`), since a page token only leads to older pages, and
 * starts the stack afresh when its filters change; `goTo(cursor, keepPrevious)` navigates.
 */
export function CursorPager({ cursor, nextPageToken, previous, setPrevious, goTo, children }: {
  cursor: string;
  nextPageToken: string;
  previous: string[];
  setPrevious(previous: string[]): void;
  goTo(cursor: string, keepPrevious: boolean): void;
  /** More controls on the same bar (a page size). */
  children?: ReactNode;
}) {
  return (
    <nav className="pager" aria-label="Pages">
      <button type="button" disabled={!cursor} onClick={() => goTo("", false)}>
        Newest
      </button>
      <button
        type="button"
        disabled={!cursor}
        onClick={() => {
          const before = previous.at(-1) ?? "";
          setPrevious(previous.slice(0, -1));
          goTo(before, true);
        }}
      >
        Newer
      </button>
      <button
        type="button"
        disabled={!nextPageToken}
        onClick={() => {
          setPrevious([...previous, cursor]);
          goTo(nextPageToken, true);
        }}
      >
        Older
      </button>
      {children}
    </nav>
  );
}
