import type { JsonValue } from "@bufbuild/protobuf";

/** A JSON value, indented; an empty object or nothing shows as a dash. */
export function JsonView({ value, label }: { value: JsonValue | undefined; label: string }) {
  const empty = value === undefined || value === null || (typeof value === "object" && !Array.isArray(value) && Object.keys(value).length === 0);
  if (empty) return <p className="muted">—</p>;
  return (
    <pre className="json" tabIndex={0} aria-label={label}>
      {JSON.stringify(value, null, 2)}
    </pre>
  );
}
