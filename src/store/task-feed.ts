import { sql, type Kysely } from "kysely";
import type { Database, TaskStatus } from "./schema.js";

/**
 * A position in the change feed (task_history in (xid, id) order): every row at or before it has
 * been seen. Rows are read only once their transaction is older than every running one, so no row
 * can later appear before a position already handed out.
 */
export interface FeedCursor {
  xid: bigint;
  id: bigint;
}

/** One history row of the feed, with the status the task had before it. */
export interface FeedRow {
  id: string;
  xid: string;
  task_id: string;
  status: TaskStatus;
  previous_status: TaskStatus | null;
  attempt: number;
  details: string;
  created_at: Date;
}

const MAX_ID = 9_223_372_036_854_775_807n;

export function compareCursors(a: FeedCursor, b: FeedCursor): number {
  if (a.xid !== b.xid) return a.xid < b.xid ? -1 : 1;
  return a.id === b.id ? 0 : a.id < b.id ? -1 : 1;
}

export function rowCursor(row: Pick<FeedRow, "xid" | "id">): FeedCursor {
  return { xid: BigInt(row.xid), id: BigInt(row.id) };
}

export function encodeCursor(c: FeedCursor): string {
  return `c1.${c.xid}.${c.id}`;
}

/** The cursor in a string, or undefined when it is not one. */
export function decodeCursor(text: string): FeedCursor | undefined {
  const m = /^c1\.(\d{1,20})\.(\d{1,19})$/.exec(text);
  if (!m) return undefined;
  const c = { xid: BigInt(m[1]!), id: BigInt(m[2]!) };
  return c.xid < 2n ** 64n && c.id <= MAX_ID ? c : undefined;
}

/** Where the feed stands now: every transaction below the snapshot's xmin is over. */
export async function feedHorizon(db: Kysely<Database>): Promise<{ cursor: FeedCursor; xmax: bigint }> {
  const { rows } = await sql<{ xmin: string; xmax: string }>`
    select pg_snapshot_xmin(pg_current_snapshot())::text as xmin, pg_snapshot_xmax(pg_current_snapshot())::text as xmax
  `.execute(db);
  return { cursor: { xid: BigInt(rows[0]!.xmin) - 1n, id: MAX_ID }, xmax: BigInt(rows[0]!.xmax) };
}

/**
 * Up to `limit` feed rows after `after`, in order, and the horizon: when fewer than `limit` rows
 * came back, everything up to the horizon has been read. The rows and the horizon come from one
 * statement, so from one snapshot: a horizon taken by a later statement could pass a transaction
 * that committed in between, whose rows this read did not see, and they would be skipped for good.
 */
export async function readFeed(db: Kysely<Database>, after: FeedCursor, limit: number): Promise<{ rows: FeedRow[]; horizon: FeedCursor }> {
  const { rows } = await sql<Omit<FeedRow, "id"> & { id: string | null; horizon: string }>`
    with snap as (select pg_snapshot_xmin(pg_current_snapshot()) as xmin)
    select h.id, h.xid, h.task_id, h.status, h.attempt, h.details, h.created_at, h.previous_status, snap.xmin::text as horizon
    from snap left join lateral (
      select h.id, h.xid::text as xid, h.task_id, h.status, h.attempt, h.details, h.created_at,
        (select p.status from task_history p where p.task_id = h.task_id and p.id < h.id order by p.id desc limit 1) as previous_status
      from task_history h
      where (h.xid, h.id) > (${after.xid.toString()}::xid8, ${after.id.toString()}::bigint)
        and h.xid < snap.xmin
      order by h.xid, h.id
      limit ${limit}
    ) h on true
    order by h.xid::xid8, h.id
  `.execute(db);
  const horizon = { xid: BigInt(rows[0]!.horizon) - 1n, id: MAX_ID };
  const found = rows.filter((r): r is typeof r & { id: string } => r.id !== null);
  return { rows: found.map(({ horizon: _, ...row }) => row), horizon };
}
