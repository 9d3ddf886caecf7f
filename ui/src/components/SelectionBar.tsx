import type { Task } from "../../../src/gen/task/v1/task_pb.js";
import { BULK_ACTIONS, type BulkAction } from "../services/bulk-actions";

/**
 * The selection's count and the actions. With ticked rows each button says how many of them it
 * applies to; with "everything matching" the count is the filter's total and the server's dry run
 * tells, in the confirmation, how many each action applies to.
 */
export function SelectionBar({ tasks, allMatching, onSelectAll, total, actions = Object.keys(BULK_ACTIONS) as BulkAction[], onAction, onClear }: {
  tasks: Task[];
  allMatching?: { total: bigint; exact: boolean };
  onSelectAll?: () => void;
  total: bigint;
  /** The actions to offer: those the token may take (default all). */
  actions?: BulkAction[];
  onAction(action: BulkAction): void;
  onClear(): void;
}) {
  return (
    <div className="selection-bar" role="region" aria-label="Selected tasks">
      <span data-testid="selected-count">
        {allMatching
          ? `All ${allMatching.total.toLocaleString()}${allMatching.exact ? "" : "+"} matching tasks selected`
          : tasks.length === 1
            ? "1 task selected"
            : `${tasks.length} tasks selected`}
      </span>
      {onSelectAll && (
        <button type="button" className="link-button" onClick={onSelectAll}>
          Select all {total.toLocaleString()} matching
        </button>
      )}
      {actions.map((action) => {
        const a = BULK_ACTIONS[action];
        if (allMatching) {
          return (
            <button key={action} type="button" className={a.danger ? "danger" : undefined} onClick={() => onAction(action)}>
              {a.label}…
            </button>
          );
        }
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
