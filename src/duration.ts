/**
 * Durations as people write and read them: the CLI's flags, its tables and the service's history
 * rows, and the dashboard (which imports this module: it must stay free of Node imports).
 */

const UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;
const BARE_SECONDS = /^\d+(?:\.\d+)?$/;

/**
 * Milliseconds of "250ms", "1.5s", "90s", "5m", "1h30m", "2d" (parts written largest first or not,
 * without spaces between them), or of a bare number of seconds ("90"); surrounding blanks are
 * ignored. Undefined when the text is not a duration.
 */
export function parseDuration(text: string): number | undefined {
  const t = text.trim();
  if (t === "") return undefined;
  if (BARE_SECONDS.test(t)) return Number(t) * 1000;
  let total = 0;
  PART.lastIndex = 0;
  for (let m = PART.exec(t); m; m = PART.exec(t)) {
    total += Number(m[1]) * UNITS[m[2] as keyof typeof UNITS];
    if (PART.lastIndex === t.length) return total;
  }
  return undefined;
}

/**
 * A duration as people read it, in the grammar parseDuration reads: "250ms", "1.5s", "12s", "3m20s",
 * "1h", "1d2h5m". Below ten seconds one decimal is kept, so a 1.5 s timeout does not read as 2 s;
 * above, whole seconds.
 */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 10_000 && ms % 1000 !== 0) return `${Math.round(ms / 100) / 10}s`;
  let s = Math.round(ms / 1000);
  let text = "";
  for (const [unit, size] of [["d", 86_400], ["h", 3600], ["m", 60], ["s", 1]] as const) {
    if (s >= size) {
      text += `${Math.floor(s / size)}${unit}`;
      s %= size;
    }
  }
  return text;
}
