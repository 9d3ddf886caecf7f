import { randomBytes } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { configEnvNames, type Config } from "../config.js";
import { InvalidArgumentError, TokenExistsError } from "../errors.js";
import { ApiTokenSchema, Role, TokenService, type ApiToken } from "../gen/task/v1/token_pb.js";
import { labelsOf } from "../labels.js";
import { audited } from "../store/audit.js";
import { auditActorOf } from "./audit-context.js";
import { insertApiToken, listApiTokens, revokeApiToken, type ApiTokenRow } from "../store/api-tokens.js";
import type { Db } from "../store/db.js";
import type { ApiRole } from "../store/schema.js";
import { tokenDigest, type Authenticator } from "./auth.js";
import { durationToMs } from "./convert.js";
import { Violations } from "./fields.js";
import { callerOf, type Identity } from "./identity.js";
import { isRestricted, METHOD_RULES, roleAllows } from "./roles.js";

/** The longest a token may be made to last (--expires): ten years. */
const MAX_EXPIRY_MS = 10 * 365 * 24 * 3600 * 1000;
/** Stored tokens start with this, so a secret scanner (and a person) can tell what it is. */
const SECRET_PREFIX = "tsk_";

/** A role as the API enum. */
export function roleToProto(role: ApiRole): Role {
  return { reader: Role.READER, operator: Role.OPERATOR, admin: Role.ADMIN, agent: Role.AGENT }[role];
}

/** An API enum as a role; undefined for UNSPECIFIED or an unknown number. */
export function roleFromProto(role: Role): ApiRole | undefined {
  return ({ [Role.READER]: "reader", [Role.OPERATOR]: "operator", [Role.ADMIN]: "admin", [Role.AGENT]: "agent" } as Partial<Record<Role, ApiRole>>)[role];
}

function rowToProto(row: ApiTokenRow): ApiToken {
  const ts = (d: Date | null) => (d ? timestampFromDate(d) : undefined);
  return create(ApiTokenSchema, {
    name: row.name,
    role: roleToProto(row.role),
    queues: row.queues,
    types: row.types,
    labels: labelsOf(row.labels),
    createdAt: ts(row.created_at),
    expiresAt: ts(row.expires_at),
    revokedAt: ts(row.revoked_at),
    lastUsedAt: ts(row.last_used_at),
    source: "database",
  });
}

function configuredToProto(who: Identity): ApiToken {
  return create(ApiTokenSchema, { name: who.name, role: roleToProto(who.role), source: "config" });
}

/** The RPCs (service/Method) a caller may call, by the role table. */
export function allowedMethods(who: Identity): string[] {
  return Object.entries(METHOD_RULES)
    .filter(([, rule]) => roleAllows(who.role, rule.role) && !(isRestricted(who) && rule.restricted === "refuse"))
    .map(([method]) => method);
}

/** What the token handlers need. */
export interface TokenServiceDeps {
  db: Db;
  /** The server's authenticator: its configured tokens are listed, and their names are taken. */
  auth: Authenticator;
  config: Partial<Pick<Config, "shellRole">>;
}

/** The TokenService handlers (the role table in roles.ts keeps all but WhoAmI to admins). */
export function createTokenService({ db: pair, auth, config }: TokenServiceDeps): ServiceImpl<typeof TokenService> {
  const db = pair.kysely;
  const shellRole = config.shellRole ?? "admin";
  return {
    async createToken(req, ctx) {
      const v = new Violations();
      if (req.name === "") v.add("name", "is required");
      else if (!/^[a-z0-9][a-z0-9_.-]{0,63}$/.test(req.name)) v.add("name", `"${req.name.slice(0, 64)}" is not a token name: 1-64 of a-z, 0-9, "_", "-", ".", starting with a letter or digit`);
      const role = roleFromProto(req.role);
      if (!role) v.add("role", "must be ROLE_READER, ROLE_OPERATOR, ROLE_ADMIN or ROLE_AGENT");
      let expiresAt: Date | null = null;
      if (req.expiresIn) {
        const ms = durationToMs(req.expiresIn);
        if (!(ms > 0) || ms > MAX_EXPIRY_MS || req.expiresIn.nanos < 0) v.add("expires_in", "must be more than 0 and at most 10 years (unset: never expires)");
        else expiresAt = new Date(Date.now() + ms);
      }
      const queues = v.queues("queues", req.queues);
      const types = v.types("types", req.types);
      const labels = v.labels("labels", req.labels);
      if (labels.length > 0 && role !== "agent") v.add("labels", "only an agent token (ROLE_AGENT) has labels");
      v.throwIfAny();
      if (auth.configuredIdentities().some((c) => c.name === req.name)) throw new TokenExistsError(req.name);
      const secret = SECRET_PREFIX + randomBytes(32).toString("base64url");
      // The audit row names the token and its settings, never its secret.
      const row = await audited(db, auditActorOf(ctx), (trx) => insertApiToken(trx, { name: req.name, role: role!, tokenHash: tokenDigest(secret), queues, types, labels, expiresAt }), (r) => ({
        action: "token_create",
        resources: { token: r.name },
        parameters: { role: r.role, queues: r.queues, types: r.types, ...(r.labels.length > 0 ? { labels: r.labels } : {}), expiresAt: r.expires_at?.toISOString() ?? null },
      }));
      return { token: rowToProto(row), secret };
    },

    async listTokens(req) {
      const stored = await listApiTokens(db, req.includeInactive);
      return { tokens: [...auth.configuredIdentities().map(configuredToProto), ...stored.map(rowToProto)] };
    },

    async revokeToken(req, ctx) {
      if (req.name === "") throw InvalidArgumentError.of("name", "is required");
      if (auth.configuredIdentities().some((c) => c.name === req.name)) {
        throw new ConnectError(`token ${req.name} is configured in ${configEnvNames.apiTokens}: remove it there and restart the servers`, Code.FailedPrecondition);
      }
      const row = await audited(db, auditActorOf(ctx), (trx) => revokeApiToken(trx, req.name), (r) => ({ action: "token_revoke", resources: { token: r.name } }));
      return { token: rowToProto(row) };
    },

    async whoAmI(_req, ctx) {
      const who = callerOf(ctx);
      return {
        name: who.name,
        role: roleToProto(who.role),
        local: who.local,
        queues: who.queues,
        types: who.types,
        shellAllowed: roleAllows(who.role, shellRole),
        shellRole: roleToProto(shellRole),
        allowedMethods: allowedMethods(who),
      };
    },
  };
}
