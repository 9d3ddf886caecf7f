import { Cron } from "croner";

const FORWARD_PROBE = 4;

/**
 * A parsed cron expression in an IANA time zone. Croner does the calendar arithmetic, including
 * daylight-saving changes, the way Vixie cron does: a fixed-time tick (e.g. 02:30 daily) that falls
 * into a spring-forward gap runs once at the end of the gap, one that occurs twice on a fall-back
 * day runs once at its first occurrence; interval expressions (`*\/15 * * * *`) tick at every real
 * instant that matches, both passes through a repeated hour included.
 */
export class CronSchedule {
  private readonly cron: Cron;

  /** Throws Error with croner's explanation when the expression or zone is invalid. */
  constructor(
    readonly expression: string,
    readonly timeZone: string,
  ) {
    // Without a callback croner starts no timer: this object only computes times.
    this.cron = new Cron(expression, { timezone: timeZone, mode: "5-or-6-parts" });
  }

  /** The first tick strictly after `after`, or undefined if the expression never matches again. */
  next(after: Date): Date | undefined {
    return this.cron.nextRun(after) ?? undefined;
  }

  /** Up to `limit` ticks in (from, to], oldest first: the most recent ones when there are more. */
  ticksBetween(from: Date, to: Date, limit: number): Date[] {
    if (limit <= 0 || to <= from) return [];
    // The usual case is one or two due ticks: a few steps forward find them all. Only a longer
    // window (an outage) walks back from `to`, which costs a step per tick.
    const forward = this.cron.nextRuns(FORWARD_PROBE, from);
    if (forward.length < FORWARD_PROBE || forward.at(-1)! > to) return forward.filter((t) => t <= to).slice(-limit);
    const recent = this.cron.previousRuns(limit, new Date(to.getTime() + 1));
    return recent.filter((t) => t > from && t <= to).reverse();
  }
}

/** Whether a string names an IANA time zone this runtime knows. */
export function isKnownTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** The calendar date (YYYY-MM-DD) of an instant in a zone. */
export function localDate(at: Date, timeZone: string): string {
  // en-CA formats dates as YYYY-MM-DD.
  return new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).format(at);
}
