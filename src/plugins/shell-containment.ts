import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The per-attempt supervisor script (keepalive watchdog; init of the PID namespace). */
export const SUPERVISOR_PATH = path.join(path.dirname(fileURLToPath(import.meta.url)), "shell-supervisor.sh");

/** How shell attempts are contained on this machine, decided once per process. */
export interface Containment {
  /**
   * `pid-namespace`: each attempt is the init of its own PID namespace (unshare --pid --fork
   * --kill-child --mount-proc), so everything it started dies with it, setsid or not.
   * `process-group`: the fallback where namespaces cannot be created (no CAP_SYS_ADMIN, as in a
   * non-root container): the attempt's process group is killed, but a process that left the group
   * (setsid) can outlive the attempt.
   */
  mode: "pid-namespace" | "process-group";
  /**
   * Whether the PID namespace comes with a user namespace (`--user --map-current-user`): how a
   * service that is not root gets one, where the kernel allows unprivileged user namespaces.
   */
  userNamespace: boolean;
  /** Whether setpriv is available: the supervisor gets PR_SET_PDEATHSIG=SIGKILL, so it dies with its worker. */
  pdeathsig: boolean;
  /** The user commands run as, when it differs from the service's own (only possible as root). */
  runAs?: { name: string; uid: number; gid: number };
}

/** A user from /etc/passwd, by name or numeric id. */
function lookupUser(user: string): { name: string; uid: number; gid: number } | undefined {
  let passwd: string;
  try {
    passwd = readFileSync("/etc/passwd", "utf8");
  } catch {
    return undefined;
  }
  for (const line of passwd.split("\n")) {
    const [name, , uid, gid] = line.split(":");
    if (name === undefined || uid === undefined || gid === undefined) continue;
    if (name === user || uid === user) return { name, uid: Number(uid), gid: Number(gid) };
  }
  return undefined;
}

function succeeds(command: string, args: string[]): boolean {
  const result = spawnSync(command, args, { stdio: "ignore", timeout: 5_000 });
  return result.status === 0;
}

/** Raised when the configured shell user cannot be used. */
export class ShellUserError extends Error {
  override name = "ShellUserError";
}

/**
 * Probes what this machine allows: a PID namespace, setpriv, a user switch. `shellUser` is the
 * configured user (undefined: `nobody` when the service runs as root, else the service's own).
 */
export function detectContainment(shellUser: string | undefined): Containment {
  const pdeathsig = succeeds("setpriv", ["--pdeathsig", "KILL", "--", "true"]);
  const pidNamespace = ["--pid", "--fork", "--kill-child", "--mount-proc", "--", "true"];
  const namespaces = succeeds("unshare", pidNamespace);
  const userNamespace = !namespaces && succeeds("unshare", ["--user", "--map-current-user", ...pidNamespace]);
  const uid = process.getuid?.() ?? -1;
  const wanted = shellUser ?? (uid === 0 ? "nobody" : undefined);
  let runAs: Containment["runAs"];
  if (wanted !== undefined) {
    const user = lookupUser(wanted);
    if (!user) throw new ShellUserError(`TASK_SHELL_USER: no user "${wanted}" in /etc/passwd`);
    if (user.uid !== uid) {
      if (uid !== 0) throw new ShellUserError(`TASK_SHELL_USER: running shell tasks as "${wanted}" needs the service to run as root`);
      if (!pdeathsig) throw new ShellUserError("TASK_SHELL_USER: switching users needs setpriv (util-linux)");
      runAs = user;
    }
  }
  return { mode: namespaces || userNamespace ? "pid-namespace" : "process-group", userNamespace, pdeathsig, runAs };
}

/**
 * The argv that runs `bash -c command` under the supervisor, contained as `c` allows:
 *   setpriv --pdeathsig KILL -- unshare --pid --fork --kill-child --mount-proc -- \
 *     shell-supervisor.sh WATCHDOG -- setpriv --reuid U --regid G --clear-groups ... -- bash -c command
 * The supervisor stays root inside the namespace (it must be able to kill the command); only the
 * command drops to the unprivileged user, with no capabilities and no way to regain them.
 */
export function containedArgv(c: Containment, watchdogSeconds: number, command: string): string[] {
  const argv: string[] = [];
  if (c.pdeathsig) argv.push("setpriv", "--pdeathsig", "KILL", "--");
  if (c.mode === "pid-namespace") {
    argv.push("unshare", ...(c.userNamespace ? ["--user", "--map-current-user"] : []), "--pid", "--fork", "--kill-child", "--mount-proc", "--");
  }
  argv.push("bash", SUPERVISOR_PATH, watchdogSeconds.toFixed(3));
  if (c.runAs) {
    argv.push(
      "setpriv",
      `--reuid=${c.runAs.uid}`,
      `--regid=${c.runAs.gid}`,
      "--clear-groups",
      "--inh-caps=-all",
      "--bounding-set=-all",
      "--no-new-privs",
      "--",
    );
  }
  argv.push("bash", "-c", command);
  return argv;
}
