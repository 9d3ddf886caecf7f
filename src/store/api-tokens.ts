import { sql, type Kysely, type Selectable } from "kysely";
import { TokenExistsError, TokenNotFoundError } from "../errors.js";
import type { ApiRole, ApiTokensTable, Database } from "./schema.js";

/** A stored token, without its hash. */
export type ApiTokenRow = Omit<Selectable<ApiTokensTable>, "token_hash">;

/** What `token create` stores. */
export interface NewApiToken {
  name: string;
  role: ApiRole;
  /** SHA-256 of the secret (32 bytes). */
  tokenHash: Buffer;
  queues: string[];
  types: string[];
  /** An agent token's labels (sorted "key=value" pairs); empty: any. */
  labels?: string[];
  expiresAt: Date | null;
}

const columns = ["id", "name", "role", "queues", "types", "labels", "created_at", "expires_at", "revoked_at", "last_used_at"] as const;

/** Stores a new token; a taken name (revoked ones included) is TokenExistsError and stores nothing. */
export async function insertApiToken(db: Kysely<Database>, token: NewApiToken): Promise<ApiTokenRow> {
  try {
    return await db
      .insertInto("api_tokens")
      .values({ name: token.name, role: token.role, token_hash: token.tokenHash, queues: token.queues, types: token.types, labels: token.labels ?? [], expires_at: token.expiresAt, revoked_at: null, last_used_at: null })
      .returning(columns)
      .executeTakeFirstOrThrow();
  } catch (err) {
    if ((err as { code?: string; constraint?: string }).code === "23505" && (err as { constraint?: string }).constraint === "api_tokens_name_key") {
      throw new TokenExistsError(token.name);
    }
    throw err;
  }
}

/** Every stored token by name; without `includeInactive`, only those neither revoked nor expired. */
export async function listApiTokens(db: Kysely<Database>, includeInactive: boolean): Promise<ApiTokenRow[]> {
  let query = db.selectFrom("api_tokens").select(columns).orderBy("name");
  if (!includeInactive) query = query.where("revoked_at", "is", null).where((eb) => eb.or([eb("expires_at", "is", null), eb("expires_at", ">", sql<Date>`now()`)]));
  return query.execute();
}

/** Revokes a token by name (a second revoke keeps the first time); TokenNotFoundError if there is none. */
export async function revokeApiToken(db: Kysely<Database>, name: string): Promise<ApiTokenRow> {
  const row = await db
    .updateTable("api_tokens")
    .set({ revoked_at: sql<Date>`coalesce(revoked_at, now())` })
    .where("name", "=", name)
    .returning(columns)
    .executeTakeFirst();
  if (!row) throw new TokenNotFoundError(name);
  return row;
}

/** The valid token (not revoked, not expired) with this hash, or undefined. One unique-index read. */
export async function findActiveApiToken(db: Kysely<Database>, tokenHash: Buffer): Promise<ApiTokenRow | undefined> {
  return db
    .selectFrom("api_tokens")
    .select(columns)
    .where("token_hash", "=", tokenHash)
    .where("revoked_at", "is", null)
    .where((eb) => eb.or([eb("expires_at", "is", null), eb("expires_at", ">", sql<Date>`now()`)]))
    .executeTakeFirst();
}

/** Records that a token was used, unless that was recorded less than a minute ago (so a busy token writes once a minute). */
export async function touchApiToken(db: Kysely<Database>, id: string): Promise<void> {
  await db
    .updateTable("api_tokens")
    .set({ last_used_at: sql<Date>`now()` })
    .where("id", "=", id)
    .where((eb) => eb.or([eb("last_used_at", "is", null), eb("last_used_at", "<", sql<Date>`now() - interval '1 minute'`)]))
    .execute();
}
