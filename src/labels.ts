/**
 * Routing labels (issue 26 item 3): a task may require labels (`task create --on region=eu`), and
 * only a worker process or agent whose labels include every one of them claims it. The rules of
 * what a label is live here once: the API, the configuration, the CLI and the dashboard apply them
 * (the dashboard imports this module: keep it free of Node imports).
 *
 * In the database a set of labels is a sorted text[] of "key=value" pairs (tasks.labels,
 * workers.labels, api_tokens.labels, migration 0032), so "the worker has every label the task
 * requires" is `task.labels <@ worker.labels`. Keys and values never contain "=" or ",".
 */

/** A label key: lower-case letters, digits, '_', '-', '.', '/', starting with a letter or digit, 1-63 characters. */
export const LABEL_KEY_PATTERN = /^[a-z0-9][a-z0-9_./-]{0,62}$/;

/** A label value: letters, digits, '_', '-', '.', 1-63 characters. */
export const LABEL_VALUE_PATTERN = /^[A-Za-z0-9_.-]{1,63}$/;

/** Most labels a task requires or a worker has. */
export const MAX_LABELS = 16;

/** The rules in words, for messages. */
export const LABEL_RULE = 'key=value, the key 1-63 of a-z, 0-9, _ - . / (starting with a letter or digit), the value 1-63 of A-Z, a-z, 0-9, _ - .';

/** Labels as a map, key -> value (what the API carries). */
export type Labels = Record<string, string>;

/** What is wrong with these labels, or undefined: each problem names the offending key. */
export function labelProblems(labels: Labels): string[] {
  const problems: string[] = [];
  const keys = Object.keys(labels);
  if (keys.length > MAX_LABELS) problems.push(`at most ${MAX_LABELS} labels (got ${keys.length})`);
  for (const k of keys.slice(0, MAX_LABELS + 1)) {
    if (!LABEL_KEY_PATTERN.test(k)) problems.push(`"${k.slice(0, 64)}" is not a label key: ${LABEL_RULE}`);
    else if (!LABEL_VALUE_PATTERN.test(labels[k] ?? "")) problems.push(`label ${k}: "${(labels[k] ?? "").slice(0, 64)}" is not a label value: ${LABEL_RULE}`);
  }
  return problems;
}

/**
 * Parses "k=v,k=v" (the CLI's --on and --labels, TASK_WORKER_LABELS). Throws an Error naming
 * what is wrong: a pair without "=", a key given twice, or a key or value outside the rules.
 */
export function parseLabels(text: string): Labels {
  const labels: Labels = {};
  for (const part of text.split(",").map((p) => p.trim()).filter((p) => p !== "")) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new Error(`"${part.slice(0, 64)}" is not a label: write ${LABEL_RULE}`);
    const key = part.slice(0, eq).trim();
    if (Object.hasOwn(labels, key)) throw new Error(`label ${key.slice(0, 64)} is given twice`);
    labels[key] = part.slice(eq + 1).trim();
  }
  const problems = labelProblems(labels);
  if (problems.length > 0) throw new Error(problems.join("; "));
  return labels;
}

/** The sorted "key=value" pairs the database stores (empty for no labels). */
export function labelPairs(labels: Labels): string[] {
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`).sort();
}

/** Labels from stored pairs (null or empty: none). */
export function labelsOf(pairs: readonly string[] | null | undefined): Labels {
  const labels: Labels = {};
  for (const p of pairs ?? []) {
    const eq = p.indexOf("=");
    if (eq > 0) labels[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return labels;
}

/** "k=v,k=v" in key order ("" for none): how the CLI and messages show labels. */
export function formatLabels(labels: Labels): string {
  return labelPairs(labels).join(",");
}

/** Whether `have` includes every label of `need` (the claim's rule, in TypeScript). */
export function labelsInclude(have: Labels, need: Labels): boolean {
  return Object.entries(need).every(([k, v]) => have[k] === v);
}
