import type { FieldSpec } from "../forms/parameter-fields";

const HINTS: Partial<Record<FieldSpec["kind"], string>> = {
  list: "One or more, separated by commas.",
  map: "One NAME=value per line.",
  json: "JSON.",
};

/** "recipient address" -> "Recipient address." */
function sentence(text: string): string {
  if (!text) return "";
  const t = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(t) ? t : `${t}.`;
}

/** "is required" for "subject" reads "subject is required"; a reason that is a sentence stays as it is. */
export function errorSentence(field: string, reason: string): string {
  return /^(is|must|cannot|should|has|was|are)\b/.test(reason) ? `${field} ${reason}` : reason;
}

/** One generated parameter input with its label, hint and error. */
export function ParameterInput({ field, value, error, onChange }: { field: FieldSpec; value: string; error?: string; onChange: (value: string) => void }) {
  const id = `param-${field.name}`;
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const hint = [sentence(field.description), HINTS[field.kind], field.defaultValue !== undefined ? `Default: ${JSON.stringify(field.defaultValue)}.` : ""].filter(Boolean).join(" ");
  const common = {
    id,
    name: field.name,
    "aria-invalid": error ? true : undefined,
    "aria-required": field.required || undefined,
    "aria-describedby": [hint ? hintId : "", error ? errorId : ""].filter(Boolean).join(" ") || undefined,
  };
  let input;
  switch (field.kind) {
    case "multiline":
    case "map":
    case "json":
      input = <textarea {...common} rows={field.kind === "multiline" ? 4 : 3} spellCheck={false} value={value} onChange={(e) => onChange(e.target.value)} className={field.kind === "multiline" ? "" : "mono"} />;
      break;
    case "boolean":
      input = (
        <select {...common} value={value} onChange={(e) => onChange(e.target.value)}>
          <option value="">Default{field.defaultValue !== undefined ? ` (${String(field.defaultValue)})` : ""}</option>
          <option value="true">true</option>
          <option value="false">false</option>
        </select>
      );
      break;
    case "choice":
      input = (
        <select {...common} value={value} onChange={(e) => onChange(e.target.value)}>
          <option value="">{field.defaultValue !== undefined ? `Default (${String(field.defaultValue)})` : "Choose…"}</option>
          {field.options?.map((o) => (
            <option key={o}>{o}</option>
          ))}
        </select>
      );
      break;
    case "integer":
    case "number":
      input = <input {...common} type="text" inputMode={field.kind === "integer" ? "numeric" : "decimal"} value={value} placeholder={field.defaultValue !== undefined ? String(field.defaultValue) : ""} onChange={(e) => onChange(e.target.value)} />;
      break;
    default:
      input = <input {...common} type="text" value={value} placeholder={field.defaultValue !== undefined ? String(field.defaultValue) : ""} onChange={(e) => onChange(e.target.value)} />;
  }
  return (
    <div className={`field${error ? " has-error" : ""}`}>
      <label htmlFor={id}>
        {field.name}
        {field.required && <span className="required"> (required)</span>}
      </label>
      {input}
      {error && (
        <p id={errorId} className="field-error" data-field-error={field.name}>
          {errorSentence(field.name, error)}
        </p>
      )}
      {hint && (
        <p id={hintId} className="hint">
          {hint}
        </p>
      )}
    </div>
  );
}
