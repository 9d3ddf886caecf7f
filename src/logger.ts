import { pino, type Logger } from "pino";

export type { Logger };

/**
 * The root structured logger. It writes to stderr, because stdout belongs to command output:
 * JSON lines for machines, or colourised single lines (pino-pretty) when stderr is a terminal, so
 * `npm start` reads well. Components take children carrying their own fields (component, taskId,
 * attempt).
 */
export function createLogger(level: string): Logger {
  if (process.stderr.isTTY) {
    return pino({ level, base: { pid: process.pid } }, pino.transport({ target: "pino-pretty", options: { destination: 2, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname", singleLine: true } }));
  }
  return pino({ level, base: { pid: process.pid } }, pino.destination({ dest: 2, sync: true }));
}
