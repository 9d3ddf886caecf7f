import type { ReactNode } from "react";

/** One column of a DataTable: its heading (also each cell's label on a phone, where rows become cards) and its cell. */
export interface Column<T> {
  label: string;
  cell(row: T): ReactNode;
  /** A data-testid for the column's cells, for the page tests. */
  testId?: string;
}

/**
 * A read-only table of rows (cards on a narrow screen, like the queue and schedule tables): the
 * first column names the row. `rowAttributes` gives each row its data-* attributes.
 */
export function DataTable<T>({
  caption,
  className,
  columns,
  rows,
  rowKey,
  rowAttributes,
}: {
  caption: string;
  className: string;
  columns: Column<T>[];
  rows: T[];
  rowKey(row: T): string;
  rowAttributes?(row: T): Record<`data-${string}`, string>;
}) {
  return (
    <table className={`schedule-table ${className}`}>
      <caption className="visually-hidden">{caption}</caption>
      <thead>
        <tr>
          {columns.map((c) => (
            <th scope="col" key={c.label}>
              {c.label}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>
        {rows.map((row) => (
          <tr key={rowKey(row)} {...rowAttributes?.(row)}>
            {columns.map((c, i) => (
              <td key={c.label} data-label={c.label} data-testid={c.testId} className={i === 0 ? "name-cell" : undefined}>
                {c.cell(row)}
              </td>
            ))}
          </tr>
        ))}
      </tbody>
    </table>
  );
}
