/** Counting task starts (ms on one clock) over sliding windows, for the rate-limit tests. */

/** The most of `starts` in any window [t, t + windowMs] that begins at a start: the busiest window. */
export function peakInWindow(starts: number[], windowMs: number): number {
  const s = [...starts].sort((a, b) => a - b);
  let peak = 0;
  let j = 0;
  for (let i = 0; i < s.length; i++) {
    while (j < s.length && s[j]! <= s[i]! + windowMs) j++;
    peak = Math.max(peak, j - i);
  }
  return peak;
}
