import type { JsonObject, JsonValue } from "@bufbuild/protobuf";

/**
 * How one parameter is edited, derived from the type's JSON Schema (as ListTaskTypes reports it):
 * - text / multiline: a string (multiline when it may be long, e.g. a command or a body)
 * - choice: a string from an enum
 * - integer / number
 * - boolean: default / true / false, so "not set" stays possible
 * - list: one or several strings (comma or newline separated), e.g. email recipients
 * - map: string values by name, one NAME=value per line, e.g. environment variables
 * - json: anything else, as JSON
 */
export type FieldKind = "text" | "multiline" | "choice" | "integer" | "number" | "boolean" | "list" | "map" | "json";

/** One parameter's input. */
export interface FieldSpec {
  name: string;
  kind: FieldKind;
  required: boolean;
  description: string;
  /** The schema's default, shown as a hint (the server applies it when the field is left empty). */
  defaultValue?: JsonValue;
  /** For choice. */
  options?: string[];
  /** For list: whether one value may be sent as a plain string (schema says string or array). */
  singleAsString?: boolean;
}

type Schema = { [key: string]: JsonValue | undefined };

const MULTILINE_FROM_LENGTH = 1000;

/** The inputs for a parameter schema, in the schema's property order. */
export function fieldsFromSchema(schema: JsonObject | undefined): FieldSpec[] {
  const properties = (schema?.properties ?? {}) as Record<string, Schema>;
  const required = new Set(Array.isArray(schema?.required) ? (schema.required as string[]) : []);
  return Object.entries(properties).map(([name, prop]) => ({
    name,
    required: required.has(name),
    description: typeof prop.description === "string" ? prop.description : "",
    ...(prop.default !== undefined ? { defaultValue: prop.default } : {}),
    ...kindOf(prop),
  }));
}

function kindOf(prop: Schema): Pick<FieldSpec, "kind" | "options" | "singleAsString"> {
  if (Array.isArray(prop.enum) && prop.enum.every((v) => typeof v === "string")) return { kind: "choice", options: prop.enum as string[] };
  const type = prop.type;
  if (type === "string") return { kind: typeof prop.maxLength === "number" && prop.maxLength >= MULTILINE_FROM_LENGTH ? "multiline" : "text" };
  if (type === "integer") return { kind: "integer" };
  if (type === "number") return { kind: "number" };
  if (type === "boolean") return { kind: "boolean" };
  if (type === "array" && isStringSchema(prop.items)) return { kind: "list", singleAsString: false };
  if (type === "object" && isStringSchema(prop.additionalProperties)) return { kind: "map" };
  const anyOf = prop.anyOf;
  if (Array.isArray(anyOf) && anyOf.length === 2) {
    const [a, b] = anyOf as Schema[];
    if (isStringSchema(a) && b?.type === "array" && isStringSchema(b.items)) return { kind: "list", singleAsString: true };
  }
  return { kind: "json" };
}

function isStringSchema(s: Schema | JsonValue | undefined): boolean {
  return typeof s === "object" && s !== null && !Array.isArray(s) && s.type === "string";
}

/** What the inputs hold: strings, and "" / "true" / "false" for booleans. */
export type FieldValues = Record<string, string>;

/** The parameters object for the inputs, or the inputs that could not be read (bad JSON, not a number). */
export function toParameters(fields: FieldSpec[], values: FieldValues): { parameters: JsonObject; errors: Record<string, string> } {
  const parameters: JsonObject = {};
  const errors: Record<string, string> = {};
  for (const field of fields) {
    const raw = values[field.name] ?? "";
    // Empty means "not set": the server applies the default or says the field is required.
    if (raw.trim() === "") continue;
    const parsed = readValue(field, raw);
    if ("error" in parsed) errors[field.name] = parsed.error;
    else parameters[field.name] = parsed.value;
  }
  return { parameters, errors };
}

function readValue(field: FieldSpec, raw: string): { value: JsonValue } | { error: string } {
  switch (field.kind) {
    case "text":
    case "multiline":
    case "choice":
      return { value: raw };
    case "integer":
    case "number": {
      const n = Number(raw.trim());
      if (!Number.isFinite(n)) return { error: "must be a number" };
      if (field.kind === "integer" && !Number.isInteger(n)) return { error: "must be a whole number" };
      return { value: n };
    }
    case "boolean":
      return { value: raw === "true" };
    case "list": {
      const items = raw.split(/[,\n]/).map((s) => s.trim()).filter((s) => s !== "");
      return { value: field.singleAsString && items.length === 1 ? items[0]! : items };
    }
    case "map": {
      const map: JsonObject = {};
      for (const [i, line] of raw.split("\n").entries()) {
        if (line.trim() === "") continue;
        const eq = line.indexOf("=");
        if (eq <= 0) return { error: `line ${i + 1}: write NAME=value` };
        map[line.slice(0, eq).trim()] = line.slice(eq + 1);
      }
      return { value: map };
    }
    case "json":
      try {
        return { value: JSON.parse(raw) as JsonValue };
      } catch {
        return { error: "must be valid JSON" };
      }
  }
}

/** The inputs for existing parameters (cloning a task); parameters the schema does not list are dropped. */
export function fromParameters(fields: FieldSpec[], parameters: JsonObject | undefined): FieldValues {
  const values: FieldValues = {};
  for (const field of fields) {
    const value = parameters?.[field.name];
    if (value === undefined || value === null) continue;
    values[field.name] = showValue(field, value);
  }
  return values;
}

function showValue(field: FieldSpec, value: JsonValue): string {
  switch (field.kind) {
    case "list":
      return Array.isArray(value) ? value.join(", ") : String(value);
    case "map":
      return Object.entries(value as JsonObject).map(([k, v]) => `${k}=${String(v)}`).join("\n");
    case "json":
      return JSON.stringify(value, null, 2);
    default:
      return String(value);
  }
}

/** Which input a server violation belongs to: "parameters.to[0]" -> "to"; others keep their name. */
export function inputForViolation(field: string): string {
  const m = /^parameters\.([A-Za-z0-9_]+)/.exec(field);
  return m ? m[1]! : field;
}
