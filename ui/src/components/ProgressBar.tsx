import type { TaskProgress } from "../../../src/gen/task/v1/task_pb.js";
import { durationMs, formatDuration } from "../format";

/** "1.5%/s", "0.02%/s": the rate with as many decimals as it needs. */
function rateText(perSecond: number): string {
  const percent = perSecond * 100;
  return `${percent >= 10 ? percent.toFixed(0) : percent >= 0.1 ? percent.toFixed(1) : percent.toFixed(2)}%/s`;
}

/**
 * A task attempt's progress: a bar with its percentage and message, and (`detailed`) the rate and
 * the time left, which the server estimates from the attempt's trend (TaskProgress).
 */
export function ProgressBar({ progress, detailed = false }: { progress: TaskProgress; detailed?: boolean }) {
  const percent = Math.floor(progress.fraction * 100);
  const left = durationMs(progress.estimatedRemaining);
  return (
    <div className={`progress${detailed ? " progress-detailed" : ""}`} data-testid="task-progress">
      <progress max={1} value={progress.fraction} aria-label={`${percent}% done${progress.message ? `: ${progress.message}` : ""}`} />
      <span className="progress-text">
        {percent}%{progress.message && <span className="progress-message"> {progress.message}</span>}
      </span>
      {detailed && (
        <span className="progress-trend muted">
          {progress.ratePerSecond > 0 ? `${rateText(progress.ratePerSecond)} · about ${formatDuration(left)} left` : "estimating time left…"}
        </span>
      )}
    </div>
  );
}
