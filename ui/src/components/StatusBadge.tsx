import type { TaskStatus } from "../../../src/gen/task/v1/task_pb.js";
import { statusName } from "../format";

/** A task status as a coloured label (the colour repeats the word, it never replaces it). */
export function StatusBadge({ status }: { status: TaskStatus }) {
  const name = statusName(status);
  return <span className={`status status-${name.toLowerCase()}`}>{name}</span>;
}
