import { pino, type Logger } from "pino";

export type { Logger };

/**
 * The root structured logger. It writes JSON lines to stderr, because stdout belongs to command
 * output; components take children carrying their own fields (component, taskId, attempt).
 */
export function createLogger(level: string): Logger {
  return pino({ level, base: { pid: process.pid } }, pino.destination({ dest: 2, sync: true }));
}
