import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import type { Kysely } from "kysely";
import { z } from "zod";
import { InvalidArgumentError, TaskTypeDisabledError, type FieldViolation } from "../errors.js";
import type { Database } from "../store/schema.js";
import { listTaskTypeVersions, upsertTaskTypes, type TaskTypeVersion, type TaskTypeVersionInput } from "../store/task-types.js";
import type { PluginRegistry } from "./registry.js";
import { fingerprint } from "../fingerprint.js";
import type { PluginDefaults, ResolvedTaskType, TaskType, TaskTypeResolver } from "./types.js";

// ajv-formats is CommonJS with a default export; under NodeNext its callable is `.default`.
type AddFormats = (ajv: Ajv2020) => Ajv2020;
const addFormats: AddFormats =
  (addFormatsModule as unknown as { default?: AddFormats }).default ?? (addFormatsModule as unknown as AddFormats);

/** The JSON Schema of a type's parameters, as registered and as ListTaskTypes reports it. */
export function parameterJsonSchema(type: Pick<TaskType, "parameters">): Record<string, unknown> {
  return z.toJSONSchema(type.parameters, { io: "input" }) as Record<string, unknown>;
}

/**
 * What a process registers for a type it has code for. The hash covers the schema and the defaults
 * (not the description), so two builds of one type share a version exactly when they validate alike.
 */
export function describeTaskType(type: TaskType & { defaults: PluginDefaults & { queue?: string } }): TaskTypeVersionInput {
  const parameterSchema = parameterJsonSchema(type);
  const defaults = { timeoutMs: type.defaults.timeoutMs, maxAttempts: type.defaults.maxAttempts, queue: type.defaults.queue ?? null };
  return {
    name: type.name,
    schemaHash: fingerprint({ parameterSchema, defaults }).slice(0, 16),
    description: type.description,
    parameterSchema,
    defaultTimeoutMs: defaults.timeoutMs,
    defaultMaxAttempts: defaults.maxAttempts,
    defaultQueue: defaults.queue,
  };
}


/**
 * The version the server validates against: the newest (first registered last) of the versions a
 * live worker serves, or the newest of all when no worker serves any (its tasks wait for one).
 * `versions` is newest first. See docs/design/task-types.md for why.
 */
export function currentVersion(versions: TaskTypeVersion[]): TaskTypeVersion | undefined {
  return versions.find((v) => v.workers.length > 0) ?? versions[0];
}

/** A type as the catalog resolved it: its current registered version, and this process's code when it has the same version. */
export interface CatalogType extends ResolvedTaskType {
  version: TaskTypeVersion;
  /** The plugin this process holds, when its version is the current one (its zod schema runs too). */
  local?: TaskType;
}

/** One entry of ListTaskTypes: a type's current version, every version, and whether a live worker serves it. */
export interface CatalogEntry {
  name: string;
  current: TaskTypeVersion;
  versions: TaskTypeVersion[];
  /** Live worker processes serving any version of the type. */
  workers: string[];
  /** Why this server refuses the type (e.g. shell not enabled here), or undefined. */
  disabledReason?: string;
}

/** What a catalog needs. */
export interface TaskTypeCatalogOptions {
  db: Kysely<Database>;
  /** The types this process has code for (the built-ins, plus a worker's own plugins): registered on first use. */
  local: PluginRegistry;
  /** A worker that has not heartbeated for this long no longer counts as serving its types. */
  liveMs: number;
  /** How long a type's looked-up versions are reused before asking PostgreSQL again. */
  cacheMs?: number;
}

/**
 * The task types registered in PostgreSQL (task_types), for validating and listing them. Every
 * type goes through it, built-ins included: this process registers the types it has code for on
 * first use, so a server with no worker yet still validates them. Parameters are checked against the
 * current version's JSON Schema (ajv); where this process has that very version's code (same hash),
 * its zod schema runs first, for the rules JSON Schema cannot carry (refinements such as run_query's
 * configured targets) and for its messages.
 */
export class TaskTypeCatalog {
  private readonly ajv = new Ajv2020({ allErrors: true, strict: false, useDefaults: true });
  private readonly validators = new Map<string, ValidateFunction>();
  private readonly cache = new Map<string, { versions: TaskTypeVersion[]; at: number }>();
  private readonly localVersions: Map<string, TaskTypeVersionInput>;
  private registered: Promise<void> | undefined;

  constructor(private readonly options: TaskTypeCatalogOptions) {
    addFormats(this.ajv);
    this.localVersions = new Map(options.local.list().map((p) => [p.name, describeTaskType(p)]));
  }

  /** Registers the local types (once; retried after a failure). */
  ensureRegistered(): Promise<void> {
    this.registered ??= upsertTaskTypes(this.options.db, [...this.localVersions.values()]).catch((err: unknown) => {
      this.registered = undefined;
      throw err;
    });
    return this.registered;
  }

  /**
   * Runs `use` (which validates requests) with a resolver for the named types. A rejection reached
   * with cached versions is checked again with fresh ones, so a type registered or upgraded (a new
   * worker version) a moment ago is honoured at once; the cache only ever makes a request pass on the
   * previous version for up to cacheMs after a rollback.
   */
  async withTypes<T>(names: string[], use: (types: TaskTypeResolver<CatalogType>) => T): Promise<T> {
    const first = await this.resolver(names);
    try {
      return use(first);
    } catch (err) {
      if (!(err instanceof InvalidArgumentError) || !first.cached) throw err;
    }
    return use(await this.resolver(names, true));
  }

  /** A resolver for the named types, with their versions looked up (or taken from a fresh cache unless `fresh`). */
  async resolver(names: string[], fresh = false): Promise<TaskTypeResolver<CatalogType> & { cached: boolean }> {
    await this.ensureRegistered();
    const now = Date.now();
    const cacheMs = this.options.cacheMs ?? 1_000;
    const wanted = [...new Set(names.filter((n) => n !== ""))];
    const stale = wanted.filter((n) => {
      const hit = this.cache.get(n);
      return fresh || !hit || now - hit.at > cacheMs;
    });
    if (stale.length > 0) {
      const rows = await listTaskTypeVersions(this.options.db, this.options.liveMs, stale);
      for (const name of stale) {
        const versions = rows.filter((r) => r.name === name);
        // Unknown types are not cached: a worker registering one is seen by the next request.
        if (versions.length > 0) this.cache.set(name, { versions, at: now });
        else this.cache.delete(name);
      }
    }
    const found = new Map(wanted.flatMap((n) => (this.cache.has(n) ? [[n, this.cache.get(n)!.versions] as const] : [])));
    return {
      cached: stale.length < wanted.length,
      resolve: (type, field = "type") => this.resolveFrom(found, type, field),
      parse: (type, parameters, prefix = "parameters") => this.parse(type, parameters, prefix),
    };
  }

  /** Every registered type with its versions and the live workers serving it, sorted by name. */
  async list(): Promise<CatalogEntry[]> {
    await this.ensureRegistered();
    const rows = await listTaskTypeVersions(this.options.db, this.options.liveMs);
    const byName = new Map<string, TaskTypeVersion[]>();
    for (const row of rows) byName.set(row.name, [...(byName.get(row.name) ?? []), row]);
    return [...byName.entries()].map(([name, versions]) => ({
      name,
      current: currentVersion(versions)!,
      versions,
      workers: [...new Set(versions.flatMap((v) => v.workers))].sort(),
      disabledReason: this.options.local.list().find((p) => p.name === name)?.disabledReason,
    }));
  }

  private resolveFrom(found: Map<string, TaskTypeVersion[]>, type: string, field: string): CatalogType {
    const versions = found.get(type);
    const version = versions && currentVersion(versions);
    if (!version) {
      throw InvalidArgumentError.of(field, `unknown task type "${type}": no worker has registered it (see ListTaskTypes or \`task-cli types\`)`);
    }
    const local = this.options.local.list().find((p) => p.name === type);
    if (local?.disabledReason) throw new TaskTypeDisabledError(type, local.disabledReason);
    const sameVersion = local && this.localVersions.get(type)?.schemaHash === version.schemaHash ? local : undefined;
    return {
      name: type,
      defaults: { timeoutMs: version.defaultTimeoutMs, maxAttempts: version.defaultMaxAttempts, ...(version.defaultQueue ? { queue: version.defaultQueue } : {}) },
      version,
      local: sameVersion,
    };
  }

  private parse(type: CatalogType, parameters: unknown, prefix: string): Record<string, unknown> {
    const input = parameters ?? {};
    const parsed = type.local ? this.options.local.parse(type.local, input, prefix) : undefined;
    // The registered schema is checked on the request's own input (ajv fills in its defaults on a copy).
    const copy = structuredClone(input);
    const validate = this.validator(type.version);
    if (!validate(copy)) throw new InvalidArgumentError(violationsOf(validate.errors ?? [], prefix));
    return parsed ?? (copy as Record<string, unknown>);
  }

  private validator(version: TaskTypeVersion): ValidateFunction {
    const key = `${version.name}\u0000${version.schemaHash}`;
    let validate = this.validators.get(key);
    if (!validate) {
      validate = compileSchema(this.ajv, version.parameterSchema, version.name);
      this.validators.set(key, validate);
    }
    return validate;
  }
}

/** Compiles a registered schema; one ajv cannot compile is the registering worker's bug, reported as such. */
export function compileSchema(ajv: Ajv2020, schema: Record<string, unknown>, name: string): ValidateFunction {
  try {
    // Without $schema/$id: ajv keeps ids it has seen, and every version of every type has its own schema.
    const { $schema: _ignored, $id: _id, ...rest } = schema;
    return ajv.compile(rest);
  } catch (err) {
    throw new Error(`the registered parameter schema of task type "${name}" is not valid JSON Schema: ${(err as Error).message}`);
  }
}

/** A fresh validator for checking that a schema compiles (definePlugin and worker start-up). */
export function schemaCompiler(): Ajv2020 {
  const ajv = new Ajv2020({ allErrors: true, strict: false, useDefaults: true });
  addFormats(ajv);
  return ajv;
}

/** ajv's errors as field violations, worded like the zod ones ("parameters.url: is required"). */
export function violationsOf(errors: ErrorObject[], prefix: string): FieldViolation[] {
  const seen = new Set<string>();
  const out: FieldViolation[] = [];
  for (const e of errors) {
    let field = prefix + pointerToPath(e.instancePath);
    let reason = e.message ?? "is invalid";
    if (e.keyword === "required") {
      field += `.${String((e.params as { missingProperty: string }).missingProperty)}`;
      reason = "is required";
    } else if (e.keyword === "additionalProperties") {
      field += `.${String((e.params as { additionalProperty: string }).additionalProperty)}`;
      reason = "is not a known parameter";
    } else if (e.keyword === "enum") {
      reason = `must be one of ${((e.params as { allowedValues: unknown[] }).allowedValues ?? []).map((v) => JSON.stringify(v)).join(", ")}`;
    }
    const key = `${field}\u0000${reason}`;
    if (!seen.has(key)) out.push({ field, reason }), seen.add(key);
  }
  return out;
}

function pointerToPath(pointer: string): string {
  if (pointer === "") return "";
  return pointer
    .slice(1)
    .split("/")
    .map((part) => part.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((part) => (/^\d+$/.test(part) ? `[${part}]` : `.${part}`))
    .join("");
}
