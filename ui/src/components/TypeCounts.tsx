import { Link } from "wouter";
import type { TaskTypeStatusCount } from "../../../src/gen/task/v1/task_pb.js";
import { STATUSES, statusName } from "../format";

/** Tasks per type and status, one row per type; each count links to the tasks view filtered to it. */
export function TypeCounts({ counts }: { counts: TaskTypeStatusCount[] }) {
  const byType = new Map<string, Map<number, bigint>>();
  for (const c of counts) {
    const row = byType.get(c.type) ?? new Map<number, bigint>();
    row.set(c.status, (row.get(c.status) ?? 0n) + c.count);
    byType.set(c.type, row);
  }
  if (byType.size === 0) return <p className="muted">No tasks yet.</p>;
  return (
    <div className="type-counts-wrap">
      <table className="type-counts" data-testid="type-counts">
        <thead>
          <tr>
            <th scope="col">Type</th>
            {STATUSES.map((s) => (
              <th scope="col" key={s}>
                {statusName(s)}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {[...byType].map(([type, row]) => (
            <tr key={type} data-type={type}>
              <th scope="row" data-label="Type">
                <Link href={`/tasks?type=${encodeURIComponent(type)}`}>{type}</Link>
              </th>
              {STATUSES.map((s) => {
                const n = row.get(s) ?? 0n;
                const name = statusName(s);
                return (
                  <td key={s} data-label={name} data-status={name}>
                    {n === 0n ? (
                      <span className="muted">0</span>
                    ) : (
                      <Link href={`/tasks?status=${name.toLowerCase()}&type=${encodeURIComponent(type)}`} aria-label={`${n} ${name.toLowerCase()} ${type} tasks`}>
                        {n.toLocaleString()}
                      </Link>
                    )}
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
