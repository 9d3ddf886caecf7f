/**
 * An agent's spool directory (issue 26 item 8): what must survive until the control plane accepts
 * it, on the agent's own disk (0700 directory, 0600 files: results may be private).
 *
 * - `agent.json`: the agent's id, so an agent restarted with the same spool registers as itself and
 *   reports the outcomes its previous run left (its heartbeats name them, which keeps their leases).
 * - `outcome-<task>-<attempt>.json`: an outcome not yet accepted, with the id of the agent that ran it.
 * - `lines-<task>-<attempt>.jsonl`: output lines past the in-memory cap (output-buffer.ts).
 * - `agent.lock`: the pid of the agent using the directory; a second live agent on it is refused
 *   (it would share the id).
 *
 * Writes are synchronous and atomic (write, then rename), so an outcome is on disk before the
 * agent tries to send it, and a kill -9 leaves either the old file or the new one.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { errorMessage } from "../errors.js";
import { AttemptResultSchema, type AttemptResult } from "../gen/task/v1/agent_pb.js";
import type { Logger } from "../logger.js";

/** An outcome waiting on disk, with the agent id it belongs to. */
export interface SpooledResult {
  agentId: string;
  result: AttemptResult;
}

/** The default spool of an agent named `name`: under the OS temporary directory, one per name. */
export function defaultAgentSpoolDir(name: string): string {
  return path.join(os.tmpdir(), "task-agent", name);
}

const OUTCOME = /^outcome-(\d+)-(\d+)\.json$/;

/** See the module comment. */
export class AgentSpool {
  constructor(
    readonly dir: string,
    private readonly logger: Logger,
  ) {}

  /** Creates the directory and takes it for this process; throws if another live agent holds it. */
  open(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const lock = path.join(this.dir, "agent.lock");
    let holder: number | undefined;
    try {
      holder = Number(readFileSync(lock, "utf8"));
    } catch {
      holder = undefined;
    }
    if (holder && holder !== process.pid && alive(holder)) {
      throw new Error(`the spool directory ${this.dir} is in use by agent process ${holder}: give this agent another --spool-dir (or --name)`);
    }
    this.write("agent.lock", String(process.pid));
  }

  /** Releases the directory (at a clean stop). */
  close(): void {
    rmSync(path.join(this.dir, "agent.lock"), { force: true });
  }

  /** The agent id an earlier run of this agent saved, if any. */
  savedAgentId(): string | undefined {
    try {
      const saved = JSON.parse(readFileSync(path.join(this.dir, "agent.json"), "utf8")) as { agentId?: unknown };
      return typeof saved.agentId === "string" && saved.agentId !== "" ? saved.agentId : undefined;
    } catch {
      return undefined;
    }
  }

  saveAgentId(agentId: string | undefined): void {
    this.safely("save the agent id", () => this.write("agent.json", JSON.stringify({ agentId: agentId ?? "" })));
  }

  /** Puts an outcome on disk before it is sent; a disk error is logged and the outcome kept in memory. */
  saveOutcome(entry: SpooledResult): void {
    const body = JSON.stringify({ agentId: entry.agentId, result: Buffer.from(toBinary(AttemptResultSchema, entry.result)).toString("base64") });
    this.safely("spool an outcome", () => this.write(outcomeFile(entry.result), body));
  }

  /** Forgets an outcome the control plane answered (recorded or refused). */
  removeOutcome(result: Pick<AttemptResult, "taskId" | "attempt">): void {
    rmSync(path.join(this.dir, outcomeFile(result)), { force: true });
  }

  /** The outcomes on disk (an earlier run's), oldest task first; unreadable files are reported and skipped. */
  loadOutcomes(): SpooledResult[] {
    const found: SpooledResult[] = [];
    for (const name of this.names().filter((n) => OUTCOME.test(n))) {
      try {
        const raw = JSON.parse(readFileSync(path.join(this.dir, name), "utf8")) as { agentId: string; result: string };
        found.push({ agentId: raw.agentId, result: fromBinary(AttemptResultSchema, Buffer.from(raw.result, "base64")) });
      } catch (err) {
        this.logger.error({ err: errorMessage(err), file: name }, "ignoring an unreadable spooled outcome");
      }
    }
    return found.sort((a, b) => (a.result.taskId < b.result.taskId ? -1 : a.result.taskId > b.result.taskId ? 1 : a.result.attempt - b.result.attempt));
  }

  /** The file names in the directory (none if it cannot be read). */
  names(): string[] {
    try {
      return readdirSync(this.dir);
    } catch {
      return [];
    }
  }

  private write(name: string, body: string): void {
    const file = path.join(this.dir, name);
    writeFileSync(`${file}.tmp`, body, { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
  }

  private safely(what: string, step: () => void): void {
    try {
      step();
    } catch (err) {
      this.logger.error({ err: errorMessage(err), dir: this.dir }, `could not ${what} on disk; kept in memory only`);
    }
  }
}

function outcomeFile(r: Pick<AttemptResult, "taskId" | "attempt">): string {
  return `outcome-${r.taskId}-${r.attempt}.json`;
}

/** Whether a process with this pid exists (signal 0 checks without sending). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
