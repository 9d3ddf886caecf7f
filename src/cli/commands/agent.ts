import os from "node:os";
import { Command } from "commander";
import { configEnvNames, loadConfig } from "../../config.js";
import { CreateTokenResponseSchema, ListTokensResponseSchema, RevokeTokenResponseSchema, Role } from "../../gen/task/v1/token_pb.js";
import { tokenClient } from "../client.js";
import { formatLabels } from "../../labels.js";
import type { CliIO } from "../io.js";
import { UsageError } from "../io.js";
import { humanTime, makeTable, printMessage } from "../output.js";
import { labelsFlag, parseInteger } from "../parse.js";
import type { GlobalOptions } from "../program.js";

/** Comma-separated values of a flag, blanks dropped. */
const list = (value: string | undefined) => (value ?? "").split(",").map((s) => s.trim()).filter(Boolean);

interface AgentFlags {
  server?: string;
  name?: string;
  slots?: string;
  queues?: string;
  labels?: string;
  enableShell?: boolean;
  http2?: boolean;
  spoolDir?: string;
}

/**
 * Registers `agent` (a remote agent: runs tasks it receives from the control plane over the API,
 * with no DATABASE_URL) and `agent token create|list|revoke` (its tokens, role agent).
 */
export function registerAgentCommands(program: Command, io: CliIO): void {
  const agent = program
    .command("agent")
    .description("Run a remote agent: it dials the server's API with an agent token, receives tasks and runs them here; it needs no database credentials")
    .option("--server <urls>", "the server's API address, or several replicas' addresses comma-separated, tried in turn on reconnection (default: --address)")
    .option("--name <name>", "the agent's name as `workers` shows it (default: this host's name)")
    .option("-n, --slots <n>", `tasks run at once (env ${configEnvNames.workerConcurrency}, default 10)`)
    .option("--queues <names>", "queues to serve, comma-separated (default: the token's queues, or default)")
    .option("--labels <k=v,...>", "the agent's labels: it claims tasks whose labels (task create --on) are all among them (default: the token's labels)")
    .option("--enable-shell", `run shell tasks (env ${configEnvNames.enableShell})`)
    .option("--http2", "use HTTP/2 (h2c on http://) instead of HTTP/1.1")
    .option("--spool-dir <dir>", `where outcomes (and output past the memory cap) wait until the server accepts them, kept across restarts (env ${configEnvNames.agentSpoolDir}, default: the OS temp dir's task-agent/NAME)`)
    .addHelpText("after", `\nThe token is --token (env TASK_TOKEN): create one with \`task-cli agent token create --name NAME\`.\nFor an https:// server whose certificate a private CA signed, pass --ca FILE (env TASK_CA).\nrun_query targets, SMTP and the outbox are this machine's own settings (${configEnvNames.queryTargets}, ${configEnvNames.smtpUrl}, ...); DATABASE_URL is not used.`)
    .action(async (flags: AgentFlags, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const server = flags.server ?? g.address;
      const addresses = list(server);
      if (addresses.length === 0) throw new UsageError("--server: no address given");
      for (const address of addresses) {
        try {
          const url = new URL(address);
          if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error();
        } catch {
          throw new UsageError(`--server: "${address}" is not an http:// or https:// URL`);
        }
      }
      const config = loadConfig({ enableShell: flags.enableShell, logLevel: g.logLevel as never });
      const labels = labelsFlag(flags.labels, "--labels");
      const slots = flags.slots === undefined ? config.workerConcurrency : parseInteger(flags.slots, "--slots", 1, 1000);
      const name = flags.name ?? (os.hostname().toLowerCase().replace(/[^a-z0-9_.-]/g, "-").replace(/^[^a-z0-9]+/, "") || "agent");
      const [{ createLogger }, { builtinPlugins }, { startAgent }, { waitForShutdownSignal }] = await Promise.all([
        import("../../logger.js"),
        import("../../plugins/builtin.js"),
        import("../../agent/agent.js"),
        import("../../services.js"),
      ]);
      const logger = createLogger(config.logLevel);
      const plugins = builtinPlugins(config, logger);
      const spoolDir = flags.spoolDir ?? config.agentSpoolDir;
      const running = startAgent({ server: addresses, token: g.token, ca: g.ca, name, registry: plugins.registry, slots, queues: list(flags.queues), labels, http2: flags.http2, spoolDir, version: config.version, logger });
      io.stdout.write(`agent ${name} connecting to ${addresses.join(", ")} (${slots} slots)\n`);
      await waitForShutdownSignal(logger);
      await running.stop();
      await plugins.close();
    });

  const token = agent.command("token").description("Manage agent tokens (role agent: AgentService only); needs an admin token");
  token
    .command("create")
    .description("Create an agent token and print it, the only time it is shown (the server keeps only its hash)")
    .requiredOption("--name <name>", "a unique name (a-z, 0-9, _ - .)")
    .option("--queues <names>", "the only queues its agents may claim, comma-separated (default: every queue)")
    .option("--labels <k=v,...>", "the labels its agents have (they may drop some, never add one), e.g. region=eu (default: any)")
    .action(async (flags: { name: string; queues?: string; labels?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const labels = labelsFlag(flags.labels, "--labels") ?? {};
      const res = await tokenClient(g).createToken({ name: flags.name, role: Role.AGENT, queues: list(flags.queues), types: [], labels });
      printMessage(io, g.output, CreateTokenResponseSchema, res, (r) =>
        `agent token ${r.token?.name} (queues: ${r.token?.queues.join(", ") || "all"}; labels: ${formatLabels(r.token?.labels ?? {}) || "any"})\n\nThe token (shown only now; keep it in a secret store):\n${r.secret}`);
    });
  token
    .command("list")
    .description("List agent tokens (never the secrets)")
    .option("--all", "also list revoked and expired tokens")
    .action(async (flags: { all?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const res = await tokenClient(g).listTokens({ includeInactive: flags.all ?? false });
      res.tokens = res.tokens.filter((t) => t.role === Role.AGENT);
      printMessage(io, g.output, ListTokensResponseSchema, res, (r) => {
        if (r.tokens.length === 0) return "no agent tokens";
        const table = makeTable(["NAME", "QUEUES", "LABELS", "CREATED", "LAST USED", "STATE"]);
        for (const t of r.tokens) {
          table.push([t.name, t.queues.join(",") || "all", formatLabels(t.labels) || "any", t.createdAt ? humanTime(t.createdAt) : "-", t.lastUsedAt ? humanTime(t.lastUsedAt) : "never", t.revokedAt ? `revoked ${humanTime(t.revokedAt)}` : "active"]);
        }
        return table.toString();
      });
    });
  token
    .command("revoke")
    .description("Revoke an agent token: its agents' streams end within seconds")
    .requiredOption("--name <name>", "the token's name")
    .action(async (flags: { name: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const res = await tokenClient(g).revokeToken({ name: flags.name });
      printMessage(io, g.output, RevokeTokenResponseSchema, res, (r) => `revoked agent token ${r.token?.name}`);
    });
}
