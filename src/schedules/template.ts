import { localDate } from "./cron.js";

/** What a tick's placeholders are filled from. */
export interface TickContext {
  scheduledAt: Date;
  timeZone: string;
  scheduleName: string;
}

const placeholders: Record<string, (tick: TickContext) => string> = {
  scheduled_at: (tick) => tick.scheduledAt.toISOString(),
  scheduled_date: (tick) => localDate(tick.scheduledAt, tick.timeZone),
  schedule_name: (tick) => tick.scheduleName,
};

/** The placeholders a template may use, for error messages and docs. */
export const placeholderNames = Object.keys(placeholders);

const PLACEHOLDER = /\{\{\s*([a-z_]+)\s*\}\}/g;

/**
 * The first unknown placeholder in a template's string values (keys are not templated), as
 * [path, name], or undefined when every placeholder is known.
 */
export function findUnknownPlaceholder(value: unknown, path: string): [string, string] | undefined {
  if (typeof value === "string") {
    for (const [, name] of value.matchAll(PLACEHOLDER)) if (!(name! in placeholders)) return [path, name!];
    return undefined;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findUnknownPlaceholder(value[i], `${path}[${i}]`);
      if (found) return found;
    }
    return undefined;
  }
  if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      const found = findUnknownPlaceholder(v, `${path}.${k}`);
      if (found) return found;
    }
  }
  return undefined;
}

/** A copy of the template with every placeholder in its string values replaced for this tick. */
export function renderTemplate<T>(value: T, tick: TickContext): T {
  if (typeof value === "string") {
    return value.replace(PLACEHOLDER, (whole, name: string) => placeholders[name]?.(tick) ?? whole) as T;
  }
  if (Array.isArray(value)) return value.map((v) => renderTemplate(v, tick)) as T;
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, renderTemplate(v, tick)])) as T;
  }
  return value;
}
