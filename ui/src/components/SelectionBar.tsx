import type { Task } from "../../../src/gen/task/v1/task_pb.js";
import { BULK_ACTIONS, type BulkAction } from "../services/bulk-actions";

/** The selected tasks' count and the actions that apply to some of them. */
export function SelectionBar({ tasks, onAction, onClear }: { tasks: Task[]; onAction(action: BulkAction): void; onClear(): void }) {
  return (
    <div className="selection-bar" role="region" aria-label="Selected tasks">
      <span data-testid="selected-count">{tasks.length === 1 ? "1 task selected" : `${tasks.length} tasks selected`}</span>
      {(Object.keys(BULK_ACTIONS) as BulkAction[]).map((action) => {
        const a = BULK_ACTIONS[action];
        const n = tasks.filter(a.applies).length;
        return (
          <button key={action} type="button" className={a.danger ? "danger" : undefined} disabled={n === 0} onClick={() => onAction(action)}>
            {a.label} {n}
          </button>
        );
      })}
      <button type="button" className="link-button" onClick={onClear}>
        Clear selection
      </button>
    </div>
  );
}
