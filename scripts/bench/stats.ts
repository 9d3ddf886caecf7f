/** Latency summaries for the benchmark. */

/** p50/p90/p99/max of a sample, in the sample's unit. */
export interface Percentiles {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentiles (NaN for an empty sample). */
export function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => (sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!);
  return { n: sorted.length, p50: at(50), p90: at(90), p99: at(99), max: sorted.at(-1) ?? Number.NaN };
}

/** "p50 1.2 / p90 … / p99 … / max … ms". */
export function formatPercentiles(p: Percentiles): string {
  const f = (v: number) => v.toFixed(1);
  return `p50 ${f(p.p50)} / p90 ${f(p.p90)} / p99 ${f(p.p99)} / max ${f(p.max)} ms (n=${p.n})`;
}

/** The median of a sample. */
export function median(values: number[]): number {
  return percentiles(values).p50;
}
