/**
 * Key templates: how a queue derives the key of a task created without one from its parameters
 * (`task-cli queue set emails --key-template '{{params.to | domain}}'`). A template is literal text
 * with `{{ … }}` parts; each part is a path into the task's parameters, `params.a.b` (a number
 * indexes an array), then filters, each after a `|`:
 *
 * | filter | makes                                                                     |
 * |--------|---------------------------------------------------------------------------|
 * | domain | the host of an e-mail address (after the last `@`) or of a URL, lower-cased |
 * | lower  | lower case                                                                |
 * | upper  | upper case                                                                |
 * | trim   | without leading and trailing white space                                  |
 *
 * Nothing else: no code runs, a template is parsed once when it is set (and refused then if it is
 * not of this form), and evaluated at create, where a missing or non-scalar value, or an empty
 * key, refuses the create naming the parameter.
 */

/** Longest template, and longest key (the tasks.key check, migration 0026). */
export const MAX_KEY_TEMPLATE_LENGTH = 200;
export const MAX_KEY_LENGTH = 200;

/** The filters a template may apply, by name. */
const FILTERS: Record<string, (value: string) => string> = {
  domain: (value) => {
    const at = value.lastIndexOf("@");
    if (at >= 0) return value.slice(at + 1).trim().toLowerCase();
    try {
      return new URL(value).hostname.toLowerCase();
    } catch {
      return value.trim().toLowerCase();
    }
  },
  lower: (value) => value.toLowerCase(),
  upper: (value) => value.toUpperCase(),
  trim: (value) => value.trim(),
};

/** One part of a parsed template: literal text, or a parameter path with its filters. */
type Part = { text: string } | { path: string[]; filters: string[] };

/** A parsed key template (parseKeyTemplate). */
export interface KeyTemplate {
  source: string;
  parts: Part[];
}

const PLACEHOLDER = /\{\{(.*?)\}\}/g;
const SEGMENT = /^[A-Za-z0-9_-]{1,64}$/;

/** Parses a template, or throws an Error saying what is wrong with it (the caller names the field). */
export function parseKeyTemplate(source: string): KeyTemplate {
  if (source.length === 0 || source.length > MAX_KEY_TEMPLATE_LENGTH) throw new Error(`must be 1 to ${MAX_KEY_TEMPLATE_LENGTH} characters`);
  const parts: Part[] = [];
  let last = 0;
  for (const match of source.matchAll(PLACEHOLDER)) {
    if (match.index > last) parts.push({ text: source.slice(last, match.index) });
    last = match.index + match[0].length;
    const [pathText = "", ...filters] = match[1]!.split("|").map((s) => s.trim());
    const path = pathText.split(".");
    if (path[0] !== "params" || path.length < 2 || !path.slice(1).every((s) => SEGMENT.test(s))) {
      throw new Error(`"{{${match[1]}}}": a part is a parameter path such as {{params.to}}`);
    }
    const unknown = filters.find((f) => !(f in FILTERS));
    if (unknown !== undefined) throw new Error(`unknown filter "${unknown.slice(0, 40)}" (filters: ${Object.keys(FILTERS).join(", ")})`);
    parts.push({ path: path.slice(1), filters });
  }
  const rest = source.slice(last);
  if (rest.includes("{{") || rest.includes("}}")) throw new Error("has an unclosed {{ or a stray }}");
  if (rest.length > 0) parts.push({ text: rest });
  if (!parts.some((p) => "path" in p)) throw new Error("must name a parameter, e.g. {{params.to | domain}}");
  return { source, parts };
}

/** A key template's result for one task, or an error naming the parameter (`field` is the parameters' field name). */
export function evaluateKeyTemplate(template: KeyTemplate, params: Record<string, unknown>, field: string): { key: string } | { field: string; error: string } {
  let key = "";
  for (const part of template.parts) {
    if ("text" in part) {
      key += part.text;
      continue;
    }
    let value: unknown = params;
    for (const segment of part.path) {
      value = value !== null && typeof value === "object" && Object.hasOwn(value, segment) ? (value as Record<string, unknown>)[segment] : undefined;
    }
    const at = `${field}.${part.path.join(".")}`;
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
      return { field: at, error: `is ${value === undefined ? "missing" : "not a string, number or boolean"}: the queue's key template ${template.source} needs it` };
    }
    key += part.filters.reduce((v, f) => FILTERS[f]!(v), String(value));
  }
  const problem = keyProblem(key);
  return problem ? { field, error: `give a key its queue's template ${template.source} can use: the key ${problem}` } : { key };
}

/** What is wrong with a key (empty, too long, control characters), or undefined. */
export function keyProblem(key: string): string | undefined {
  if (key.length === 0) return "is empty";
  if (key.length > MAX_KEY_LENGTH) return `is longer than ${MAX_KEY_LENGTH} characters`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(key)) return "contains control characters";
  return undefined;
}
