import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import { chaosEnv, cli } from "./processes.js";
import { startTcpProxy, type TcpProxy } from "./tcp-proxy.js";

/** The control plane's settings: the chaos run's (short lease, frequent checks), with a lease above the agents' 3 s stop time. */
const serverEnv = { ...chaosEnv, TASK_LEASE_MS: "4000" };

/** A free loopback port (a replica restarts on the same one, behind the same proxies). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** One control-plane replica: `task-cli up --workers 0` (the API alone) on a fixed port. */
class Replica {
  proc: ChildProcess | undefined;
  constructor(
    readonly port: number,
    private readonly spawnCli: (args: string[], env: Record<string, string>) => ChildProcess,
    private readonly onDeath: (why: string) => void,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  start(): Promise<void> {
    const proc = this.spawnCli(["up", "--workers", "0", "--port", String(this.port)], {});
    this.proc = proc;
    proc.stderr!.pipe(process.stderr);
    return new Promise((resolve, reject) => {
      let out = "";
      proc.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        if (/listening on http:/.test(out)) resolve();
      });
      proc.once("exit", (code, signal) => {
        if (this.proc === proc) this.onDeath(`replica on port ${this.port} exited (${code ?? signal})`);
        reject(new Error(`replica exited with ${code ?? signal}`));
      });
    });
  }

  /** kill -9, then starts again on the same port after `downMs`. */
  async restart(downMs: number): Promise<void> {
    const old = this.proc!;
    this.proc = undefined;
    const gone = new Promise((resolve) => old.once("exit", resolve));
    old.kill("SIGKILL");
    await gone;
    await new Promise((r) => setTimeout(r, downMs));
    await this.start();
  }
}

/** One agent: its two proxies (one per replica) and its current process. */
export interface ChaosAgent {
  name: string;
  proxies: TcpProxy[];
  proc: ChildProcess | undefined;
  /** Reconnections its log reported, over all its processes. */
  reconnects: number;
}

/**
 * The processes of an agent chaos run: two API replicas on one database, agents that reach both
 * through proxies the run owns, and (until the server itself rescues) one database worker that
 * runs the reconciler.
 */
export class AgentChaosProcesses {
  readonly replicas: Replica[] = [];
  readonly agents: ChaosAgent[] = [];
  private rescuer: ChildProcess | undefined;
  private stopping = false;
  /** Set when a process died on its own: the run cannot finish, so it should stop at once. */
  died: string | undefined;

  constructor(
    private readonly databaseUrl: string,
    private readonly apiTokens: string,
    private readonly slots: number,
  ) {}

  private spawn(args: string[], env: Record<string, string>, database = true): ChildProcess {
    return spawn(process.execPath, [cli, ...args], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...(database ? { DATABASE_URL: this.databaseUrl, TASK_API_TOKENS: this.apiTokens, ...serverEnv } : {}), ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
  }

  /** Starts `count` replicas on fixed ports. */
  async startReplicas(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      const replica = new Replica(await freePort(), (args, env) => this.spawn(args, env), (why) => (this.stopping ? undefined : (this.died = why)));
      this.replicas.push(replica);
    }
    await Promise.all(this.replicas.map((r) => r.start()));
  }

  /**
   * The one process that runs the reconciler (rescue of lost attempts, expiry) today: a database
   * worker serving a queue no task uses. Drop it once the API replicas run rescue themselves.
   */
  startRescuer(): void {
    const proc = this.spawn(["serve", "-n", "1", "--queues", "chaos-rescuer-only"], {});
    proc.stdout!.resume();
    proc.stderr!.pipe(process.stderr);
    proc.once("exit", (code, signal) => {
      if (!this.stopping) this.died = `the rescuer exited (${code ?? signal})`;
    });
    this.rescuer = proc;
  }

  /** Creates the agents' proxies (one per replica each) and starts their processes. */
  async startAgents(count: number, token: string): Promise<void> {
    for (let i = 0; i < count; i++) {
      const proxies = await Promise.all(this.replicas.map((r) => startTcpProxy([`http://127.0.0.1:${r.port}`])));
      const agent: ChaosAgent = { name: `chaos-agent-${i}`, proxies, proc: undefined, reconnects: 0 };
      this.agents.push(agent);
      this.startAgent(agent, token);
    }
  }

  /** Starts the agent's process: both its proxies as its server list, no database in its environment. */
  startAgent(agent: ChaosAgent, token: string): void {
    const servers = agent.proxies.map((p) => p.url).join(",");
    const proc = this.spawn(["agent", "--server", servers, "--name", agent.name, "-n", String(this.slots), "--enable-shell"], { TASK_TOKEN: token, LOG_LEVEL: "warn", TASK_SHELL_KILL_GRACE_MS: "500" }, false);
    // Its log (stderr) is counted, not shown: a cut or a kill makes many expected warnings.
    let pending = "";
    proc.stdout!.resume();
    proc.stderr!.on("data", (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split("\n");
      pending = lines.pop()!;
      agent.reconnects += lines.filter((l) => /reconnecting/.test(l)).length;
    });
    agent.proc = proc;
  }

  /** kill -9 of the agent's process; resolves once it is gone. */
  async killAgent(agent: ChaosAgent): Promise<number> {
    const proc = agent.proc!;
    const gone = new Promise((resolve) => proc.once("exit", resolve));
    proc.kill("SIGKILL");
    await gone;
    return proc.pid!;
  }

  /** SIGTERM to every process, waiting for clean exits. */
  async stopAll(): Promise<void> {
    this.stopping = true;
    const all = [...this.agents.map((a) => a.proc), this.rescuer, ...this.replicas.map((r) => r.proc)].filter((p): p is ChildProcess => p !== undefined && p.exitCode === null && p.signalCode === null);
    await Promise.all(all.map((p) => new Promise((resolve) => (p.once("exit", resolve), p.kill("SIGTERM")))));
    await Promise.all(this.agents.flatMap((a) => a.proxies.map((p) => p.close())));
  }

  /** SIGKILL to anything still running (cleanup after a failure). */
  killAll(): void {
    this.stopping = true;
    for (const p of [...this.agents.map((a) => a.proc), this.rescuer, ...this.replicas.map((r) => r.proc)]) if (p && p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    for (const a of this.agents) for (const p of a.proxies) void p.close();
  }
}
