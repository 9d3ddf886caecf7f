import { useState, type FormEvent } from "react";
import type { TaskLogLine } from "../../../src/gen/task/v1/task_pb.js";
import { taskClient } from "../services/client";
import { errorText } from "../services/field-errors";

/** Most lines one jump shows (GetTaskLogs' largest page). */
const MAX_RANGE = 5000;

/** "Go to lines": any range of a task's output by line number, read with GetTaskLogs from/to. */
export function LogRange({ id, lastSeq }: { id: bigint; lastSeq: number }) {
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const [lines, setLines] = useState<TaskLogLine[] | undefined>();
  const [problem, setProblem] = useState("");
  const [busy, setBusy] = useState(false);

  async function jump(e: FormEvent) {
    e.preventDefault();
    setProblem("");
    const f = Number(from);
    const t = to === "" ? f + 99 : Number(to);
    if (!Number.isInteger(f) || f < 1) return setProblem("From must be a line number, 1 or more.");
    if (!Number.isInteger(t) || t < f) return setProblem("To must be a line number, not before From.");
    if (t - f + 1 > MAX_RANGE) return setProblem(`At most ${MAX_RANGE} lines at a time.`);
    setBusy(true);
    try {
      const res = await taskClient.getTaskLogs({ id, from: f, to: t, limit: MAX_RANGE });
      setLines(res.lines);
    } catch (err) {
      setProblem(errorText(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="log-range">
      <form className="log-range-form" onSubmit={jump} aria-label="Go to lines">
        <label>
          Lines <input type="number" min={1} inputMode="numeric" value={from} onChange={(e) => setFrom(e.target.value)} aria-label="From line" placeholder="from" required />
        </label>
        <label>
          to <input type="number" min={1} inputMode="numeric" value={to} onChange={(e) => setTo(e.target.value)} aria-label="To line" placeholder={from ? String(Number(from) + 99) : "to"} />
        </label>
        <button type="submit" disabled={busy || lastSeq === 0}>
          {busy ? "Loading…" : "Go"}
        </button>
        {lines && (
          <button type="button" onClick={() => setLines(undefined)}>
            Close
          </button>
        )}
      </form>
      {problem && (
        <p className="field-error" role="alert">
          {problem}
        </p>
      )}
      {lines && (
        <pre className="log-lines log-range-lines" data-testid="log-range" aria-label="Lines in range">
          {lines.length === 0 ? <span className="muted">No lines stored in that range.</span> : null}
          {lines.map((l) => (
            <span key={l.seq} className={`log-line log-${l.stream}`} data-seq={l.seq}>
              <span className="log-seq">{l.seq}</span> {l.line}
              {"\n"}
            </span>
          ))}
        </pre>
      )}
    </div>
  );
}
