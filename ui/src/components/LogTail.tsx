import { useEffect, useLayoutEffect, useRef, useState } from "react";
import type { TaskLogLine } from "../../../src/gen/task/v1/task_pb.js";

/**
 * The end of a task's output, following new lines as they arrive while the view is scrolled to the
 * bottom (scrolling up pauses following; "Follow" resumes it).
 */
export function LogTail({ lines, lastSeq, live, onDownload, downloading }: { lines: TaskLogLine[]; lastSeq: number; live: boolean; onDownload: () => void; downloading: boolean }) {
  const box = useRef<HTMLPreElement>(null);
  const [follow, setFollow] = useState(true);

  useLayoutEffect(() => {
    const el = box.current;
    if (el && follow) el.scrollTop = el.scrollHeight;
  }, [lines, follow]);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const onScroll = () => setFollow(el.scrollHeight - el.scrollTop - el.clientHeight < 24);
    el.addEventListener("scroll", onScroll, { passive: true });
    return () => el.removeEventListener("scroll", onScroll);
  }, []);

  const hidden = lastSeq - lines.length;
  return (
    <div className="log">
      <div className="log-toolbar">
        <span className="muted" aria-live="polite">
          {lastSeq === 0 ? "No output yet" : `${lastSeq} line${lastSeq === 1 ? "" : "s"}`}
          {hidden > 0 ? ` (showing the last ${lines.length})` : ""}
          {live ? " · live" : ""}
        </span>
        <span className="log-actions">
          {!follow && (
            <button type="button" onClick={() => setFollow(true)}>
              Follow
            </button>
          )}
          <button type="button" onClick={onDownload} disabled={lastSeq === 0 || downloading}>
            {downloading ? "Downloading…" : "Download"}
          </button>
        </span>
      </div>
      <pre ref={box} className="log-lines" tabIndex={0} aria-label="Output" data-testid="log-lines">
        {lines.map((l) => (
          <span key={l.seq} className={`log-line log-${l.stream}`} data-seq={l.seq}>
            {l.line}
            {"\n"}
          </span>
        ))}
      </pre>
    </div>
  );
}
