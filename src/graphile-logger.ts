import { Logger as GraphileLogger, type LogLevel } from "graphile-worker";
import type { Logger } from "./logger.js";

/**
 * Routes graphile-worker's logging into our structured logger, as a child with its scope fields.
 * Its info level is mostly a line per completed job, which our own logs and task history already
 * cover, so it becomes debug; its warnings and errors stay as they are.
 */
export function graphileLogger(logger: Logger): GraphileLogger {
  return new GraphileLogger((scope) => {
    const child = logger.child({ component: "graphile-worker", ...scope });
    return (level: LogLevel, message: string, meta?: unknown) => {
      const fields = meta && typeof meta === "object" ? { meta } : {};
      switch (level) {
        case "error":
          return child.error(fields, message);
        case "warning":
          return child.warn(fields, message);
        default:
          return child.debug(fields, message);
      }
    };
  });
}
