import { Command } from "commander";
import { durationFromMs } from "../../api/convert.js";
import { configEnvNames } from "../../config.js";
import { CreateTokenResponseSchema, ListTokensResponseSchema, RevokeTokenResponseSchema, Role, WhoAmIResponseSchema, type ApiToken } from "../../gen/task/v1/token_pb.js";
import { tokenClient } from "../client.js";
import type { CliIO } from "../io.js";
import { UsageError } from "../io.js";
import { humanTime, keyValueTable, makeTable, printMessage } from "../output.js";
import { parseDurationFlag } from "../parse.js";
import type { GlobalOptions } from "../program.js";

const ROLE_NAMES: Record<string, Role> = { reader: Role.READER, operator: Role.OPERATOR, admin: Role.ADMIN, agent: Role.AGENT };

/** A role's name as people type it. */
export function roleName(role: Role): string {
  return Object.entries(ROLE_NAMES).find(([, r]) => r === role)?.[0] ?? "unknown";
}

/** Comma-separated values of a flag, blanks dropped. */
const list = (value: string | undefined) => (value ?? "").split(",").map((s) => s.trim()).filter(Boolean);

function tokenState(t: ApiToken): string {
  if (t.revokedAt) return `revoked ${humanTime(t.revokedAt)}`;
  if (t.expiresAt && t.expiresAt.seconds * 1000n < BigInt(Date.now())) return `expired ${humanTime(t.expiresAt)}`;
  return "active";
}

function tokenTable(t: ApiToken | undefined): string {
  if (!t) return "(no token)";
  return keyValueTable([
    ["Token", t.name],
    ["Role", roleName(t.role)],
    ["Queues", t.queues.join(", ") || "all"],
    ["Types", t.types.join(", ") || "all"],
    ["Expires", t.expiresAt ? humanTime(t.expiresAt) : "never"],
    ["State", tokenState(t)],
  ]);
}

/** Registers `token create|list|revoke` and `whoami`. */
export function registerTokenCommands(program: Command, io: CliIO): void {
  const token = program.command("token").description("Manage named API tokens and their roles (reader, operator, admin); needs an admin token");

  token
    .command("create")
    .description("Create a token and print it, the only time it is shown (the server keeps only its hash)")
    .requiredOption("--name <name>", "a unique name (a-z, 0-9, _ - .), shown in logs")
    .requiredOption("--role <role>", "reader (reads and streams), operator (also create, cancel, retry, pause, resume, bulk) or admin (everything)")
    .option("--expires <duration>", "refuse the token after this long, e.g. 90d or 12h (default: never)")
    .option("--queues <names>", "restrict it to these queues, comma-separated")
    .option("--types <names>", "restrict it to these task types, comma-separated")
    .action(async (flags: { name: string; role: string; expires?: string; queues?: string; types?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const role = ROLE_NAMES[flags.role];
      if (role === undefined) throw new UsageError(`--role: "${flags.role}" is not a role (reader, operator, admin)`);
      const expiresIn = flags.expires === undefined ? undefined : durationFromMs(parseDurationFlag(flags.expires, "--expires"));
      const res = await tokenClient(g).createToken({ name: flags.name, role, expiresIn, queues: list(flags.queues), types: list(flags.types) });
      printMessage(io, g.output, CreateTokenResponseSchema, res, (r) => `${tokenTable(r.token)}\n\nThe token (shown only now; keep it in a secret store):\n${r.secret}`);
    });

  token
    .command("list")
    .aliases(["l", "ls"])
    .description("List tokens: name, role, restriction, expiry, last use (never the secrets)")
    .option("--all", "also list revoked and expired tokens")
    .action(async (flags: { all?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const res = await tokenClient(g).listTokens({ includeInactive: flags.all ?? false });
      printMessage(io, g.output, ListTokensResponseSchema, res, (r) => {
        if (r.tokens.length === 0) return "no tokens";
        const table = makeTable(["NAME", "ROLE", "QUEUES", "TYPES", "SOURCE", "EXPIRES", "LAST USED", "STATE"]);
        for (const t of r.tokens) {
          table.push([
            t.name,
            roleName(t.role),
            t.queues.join(",") || "all",
            t.types.join(",") || "all",
            t.source === "config" ? configEnvNames.apiTokens : "created",
            t.expiresAt ? humanTime(t.expiresAt) : "never",
            t.lastUsedAt ? humanTime(t.lastUsedAt) : t.source === "config" ? "-" : "never",
            tokenState(t),
          ]);
        }
        return table.toString();
      });
    });

  token
    .command("revoke")
    .description("Revoke a token: every server refuses it within a second")
    .requiredOption("--name <name>", "the token's name")
    .action(async (flags: { name: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const res = await tokenClient(g).revokeToken({ name: flags.name });
      printMessage(io, g.output, RevokeTokenResponseSchema, res, (r) => `revoked\n${tokenTable(r.token)}`);
    });

  program
    .command("whoami")
    .description("Show the token this CLI presents: its name, role, restriction and whether it may create shell tasks")
    .action(async (_flags: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const res = await tokenClient(g).whoAmI({});
      printMessage(io, g.output, WhoAmIResponseSchema, res, (r) =>
        keyValueTable([
          ["Token", r.local ? "local (no token; the server runs without tokens)" : r.name],
          ["Role", roleName(r.role)],
          ["Queues", r.queues.join(", ") || "all"],
          ["Types", r.types.join(", ") || "all"],
          ["Shell tasks", r.shellAllowed ? "allowed" : `not allowed (needs ${roleName(r.shellRole)})`],
        ]),
      );
    });
}
