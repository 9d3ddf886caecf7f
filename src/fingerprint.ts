import { createHash } from "node:crypto";

/**
 * A stable SHA-256 fingerprint (hex) of a JSON value: objects' keys are sorted at every depth, so
 * two values that differ only in key order have the same fingerprint. Used for idempotency keys'
 * request hashes and task types' schema hashes, which are stored: changing the encoding changes
 * every stored fingerprint.
 */
export function fingerprint(value: unknown): string {
  return createHash("sha256").update(canonicalJson(value)).digest("hex");
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}
