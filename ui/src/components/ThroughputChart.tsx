import type { TaskThroughputBucket } from "../../../src/gen/task/v1/throughput_pb.js";
import { toDate } from "../format";

/** The outcomes stacked in each bar, bottom up, with the colour token each is drawn in. */
const SERIES = [
  { key: "succeeded", label: "succeeded", color: "var(--succeeded)" },
  { key: "failed", label: "failed", color: "var(--failed)" },
  { key: "cancelled", label: "cancelled", color: "var(--cancelled)" },
  { key: "retried", label: "retried", color: "var(--retrying)" },
] as const;

type SeriesKey = (typeof SERIES)[number]["key"];

const WIDTH = 600;
const HEIGHT = 120;
const time = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

/** The sum of each outcome over the buckets. */
export function throughputTotals(buckets: TaskThroughputBucket[]): Record<SeriesKey, bigint> {
  const totals = { succeeded: 0n, failed: 0n, cancelled: 0n, retried: 0n };
  for (const b of buckets) for (const s of SERIES) totals[s.key] += b[s.key];
  return totals;
}

/**
 * Attempts ended per minute as stacked bars (an SVG drawn here: one chart of 60 bars does not need
 * a chart library's 20 KB). The totals are written out beside it, so the chart is never the only
 * way to read them; each bar has a tooltip with its minute's figures.
 */
export function ThroughputChart({ buckets }: { buckets: TaskThroughputBucket[] }) {
  const totals = throughputTotals(buckets);
  const peak = Math.max(1, ...buckets.map((b) => SERIES.reduce((n, s) => n + Number(b[s.key]), 0)));
  const slot = WIDTH / Math.max(1, buckets.length);
  const first = toDate(buckets[0]?.startTime);
  const last = toDate(buckets.at(-1)?.startTime);
  return (
    <figure className="throughput">
      <ul className="throughput-totals" data-testid="throughput-totals">
        {SERIES.map((s) => (
          <li key={s.key}>
            <span className="swatch" style={{ background: s.color }} aria-hidden="true" />
            <span className="count-value-small" data-outcome={s.key}>
              {totals[s.key].toLocaleString()}
            </span>{" "}
            {s.label}
          </li>
        ))}
      </ul>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} preserveAspectRatio="none" role="img" aria-label={`Attempts ended per minute; peak ${peak} in a minute`} className="throughput-chart">
        <line x1="0" y1={HEIGHT - 0.5} x2={WIDTH} y2={HEIGHT - 0.5} className="axis" />
        {buckets.map((b, i) => {
          let y = HEIGHT;
          const start = toDate(b.startTime);
          const tip = `${start ? time.format(start) : ""}: ${SERIES.map((s) => `${b[s.key]} ${s.label}`).join(", ")}`;
          return (
            <g key={i}>
              <title>{tip}</title>
              {/* An invisible full-height slot, so a minute with few finishes still shows its tooltip. */}
              <rect x={i * slot} y={0} width={slot} height={HEIGHT} fill="transparent" />
              {SERIES.map((s) => {
                const h = (Number(b[s.key]) / peak) * (HEIGHT - 4);
                if (h <= 0) return null;
                y -= h;
                return <rect key={s.key} x={i * slot + slot * 0.1} y={y} width={slot * 0.8} height={h} fill={s.color} />;
              })}
            </g>
          );
        })}
      </svg>
      <figcaption className="muted throughput-axis">
        <span>{first ? time.format(first) : ""}</span>
        <span>peak {peak.toLocaleString()}/min</span>
        <span>{last ? time.format(last) : ""}</span>
      </figcaption>
    </figure>
  );
}
