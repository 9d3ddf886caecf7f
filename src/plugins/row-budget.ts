import type Cursor from "pg-cursor";

/** The most rows one cursor read asks for. */
const MAX_BATCH_ROWS = 1_000;
/**
 * Rows the first read asks for, before any width is known. Two, not one: PostgreSQL ends a read of
 * n rows with "suspended" when it has sent n, even if the result had no more, so a read of one row
 * cannot tell a one-row result (`select now()`, `count(*)`, the common case) is complete, and that
 * took a second round trip; a read of two ends with "complete" for it. The price: one more row of
 * unknown width in memory at once.
 */
const FIRST_READ_ROWS = 2;
/** Roughly how many bytes one cursor read may bring into memory. */
const BATCH_BYTES = 4 * 1024 * 1024;

/** Limits for reading one result. */
export interface RowBudget {
  /** Rows kept in the result. */
  maxRows: number;
  /** JSON bytes of the kept rows. */
  maxResultBytes: number;
  /** Bytes read from the server in all; reading stops there and the count is a lower bound. */
  maxReadBytes: number;
}

/** What was read. */
export interface ReadRows {
  columns: string[];
  rows: unknown[];
  /** Rows read (all of them when countComplete). */
  rowCount: number;
  /** False when reading stopped at the read budget: more rows may exist. */
  countComplete: boolean;
  /** Bytes of JSON the kept rows take. */
  resultBytes: number;
}

/**
 * About how many bytes a value takes in memory and as JSON, without serialising it (a 100 MB
 * string costs nothing to measure this way).
 */
export function estimateBytes(value: unknown): number {
  if (value === null || value === undefined) return 4;
  if (typeof value === "string") return value.length + 2;
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return 8;
  if (Buffer.isBuffer(value)) return value.length * 2 + 8;
  if (value instanceof Date) return 26;
  if (Array.isArray(value)) return value.reduce((n: number, v) => n + estimateBytes(v) + 1, 2);
  if (typeof value === "object") {
    let n = 2;
    for (const [k, v] of Object.entries(value)) n += k.length + 4 + estimateBytes(v);
    return n;
  }
  return 8;
}

/**
 * Reads a cursor under a byte budget. PostgreSQL sends a whole batch of rows at once whatever their
 * width, so the first read takes FIRST_READ_ROWS rows and each later read is sized from the widest
 * row seen so far, keeping what one read brings into memory near BATCH_BYTES: a result of 100 MB
 * rows is read one row at a time after the first two, never 1,000 of them. Rows are kept while they
 * fit both maxRows and maxResultBytes; counting goes on until the cursor ends or maxReadBytes were read.
 * `stop` ends reading between batches.
 *
 * Hazard: a result whose rows suddenly widen after many narrow ones can still bring one batch of
 * wide rows in at once.
 */
export async function readWithBudget(cursor: Cursor, budget: RowBudget, stop: AbortSignal): Promise<ReadRows> {
  const rows: unknown[] = [];
  let columns: string[] = [];
  let rowCount = 0;
  let readBytes = 0;
  let resultBytes = 2; // "[]"
  let keeping = true;
  let widest = 1;
  let batchRows = FIRST_READ_ROWS;
  for (;;) {
    stop.throwIfAborted();
    const batch = await cursor.read(batchRows);
    if (columns.length === 0 && batch.length > 0) columns = Object.keys(batch[0] as object);
    for (const row of batch) {
      rowCount++;
      const size = estimateBytes(row);
      readBytes += size;
      widest = Math.max(widest, size);
      if (keeping && rows.length < budget.maxRows && resultBytes + size + 1 <= budget.maxResultBytes) {
        // Exact size, affordable now that the estimate says the row fits.
        const exact = Buffer.byteLength(JSON.stringify(row)) + 1;
        if (resultBytes + exact <= budget.maxResultBytes) {
          rows.push(row);
          resultBytes += exact;
          continue;
        }
      }
      keeping = false; // keep a prefix of the result, never rows with gaps between them
    }
    if (batch.length < batchRows) return { columns, rows, rowCount, countComplete: true, resultBytes };
    if (readBytes >= budget.maxReadBytes) return { columns, rows, rowCount, countComplete: false, resultBytes };
    batchRows = Math.max(1, Math.min(MAX_BATCH_ROWS, Math.floor(BATCH_BYTES / widest)));
  }
}
