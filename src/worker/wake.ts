/**
 * Wakes a worker pool when jobs it knows of come due, so a delayed task or a retry after backoff
 * starts at its run_at rather than at graphile-worker's next poll (up to TASK_POLL_INTERVAL_MS
 * late). graphile-worker is told of new jobs by NOTIFY, but a job that is not due yet is not
 * fetched then, and nothing fetches it when it comes due but the poll. The times come from the
 * statements that enqueue future jobs (see WAKE_CHANNEL); the poll stays the fallback for any
 * time missed (a notification lost while disconnected, more times than `capacity`).
 */
export class WakeSchedule {
  /** Due times, epoch ms, ascending. */
  private times: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  private armedFor = Infinity;
  private stopped = false;

  constructor(
    private readonly nudge: (count: number) => void,
    private readonly capacity = 1_000,
  ) {}

  /** Remembers that a job comes due at `at` (epoch ms). */
  add(at: number): void {
    if (this.stopped || !Number.isFinite(at)) return;
    let i = this.times.length;
    while (i > 0 && this.times[i - 1]! > at) i--;
    this.times.splice(i, 0, at);
    if (this.times.length > this.capacity) this.times.pop();
    this.arm();
  }

  /** Forgets every time and cancels the timer. */
  stop(): void {
    this.stopped = true;
    this.times = [];
    clearTimeout(this.timer);
  }

  private arm(): void {
    const next = this.times[0];
    if (next === undefined || next >= this.armedFor) return;
    clearTimeout(this.timer);
    this.armedFor = next;
    // A few ms late rather than early: a job is fetchable only once the database's now() >= run_at.
    // setTimeout cannot wait longer than ~24.8 days; re-arm after an hour instead.
    this.timer = setTimeout(this.fire, Math.min(Math.max(next - Date.now() + 5, 0), 3_600_000));
    this.timer.unref();
  }

  private fire = (): void => {
    this.armedFor = Infinity;
    this.timer = undefined;
    const now = Date.now();
    let due = 0;
    while (this.times.length > 0 && this.times[0]! <= now) {
      this.times.shift();
      due++;
    }
    if (due > 0) this.nudge(due);
    this.arm();
  };
}
