import { z } from "zod";
import { InvalidArgumentError, TaskTypeDisabledError } from "../errors.js";
import type { TaskType } from "./types.js";

/** The task types (plugins) this process knows, by name. Filled once at start-up; duplicate names are rejected. */
export class PluginRegistry<P extends TaskType = TaskType> {
  private readonly plugins = new Map<string, P>();

  constructor(plugins: P[] = []) {
    for (const plugin of plugins) this.register(plugin);
  }

  /** Adds a plugin; a second plugin with the same name is a programming error. */
  register(plugin: P): void {
    if (this.plugins.has(plugin.name)) throw new Error(`plugin "${plugin.name}" is registered twice`);
    this.plugins.set(plugin.name, plugin);
  }

  /** Every plugin, sorted by name. */
  list(): P[] {
    return [...this.plugins.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The plugin for a type; unknown or disabled types are rejected with the field that named them. */
  resolve(type: string, field = "type"): P {
    const plugin = this.plugins.get(type);
    if (!plugin) {
      const known = [...this.plugins.keys()].sort().join(", ");
      throw InvalidArgumentError.of(field, `unknown task type "${type}" (known types: ${known})`);
    }
    if (plugin.disabledReason) throw new TaskTypeDisabledError(type, plugin.disabledReason);
    return plugin;
  }

  /**
   * Validates parameters against the type's schema and returns them with defaults applied.
   * Violations name the field under `prefix` (e.g. "parameters.to[0]").
   */
  parse(plugin: TaskType, parameters: unknown, prefix = "parameters"): Record<string, unknown> {
    const parsed = plugin.parameters.safeParse(parameters ?? {}, { error: requiredMessage });
    if (parsed.success) return parsed.data as Record<string, unknown>;
    throw new InvalidArgumentError(
      parsed.error.issues.map((issue) => ({ field: fieldPath(prefix, issue.path), reason: issue.message })),
    );
  }

  /** The JSON Schema of a plugin's parameters, as ListTaskTypes reports it. */
  jsonSchema(plugin: TaskType): Record<string, unknown> {
    return z.toJSONSchema(plugin.parameters, { io: "input" }) as Record<string, unknown>;
  }
}

/**
 * Plainer messages than zod's defaults: a missing field (even one that accepts several shapes) "is
 * required", and a bad record key says what the key's own schema says is wrong.
 */
function requiredMessage(issue: { code?: string; input?: unknown; issues?: { message: string }[] }): string | undefined {
  if ((issue.code === "invalid_type" || issue.code === "invalid_union") && issue.input === undefined) return "is required";
  if (issue.code === "invalid_key" && issue.issues?.length) return issue.issues.map((i) => i.message).join("; ");
  return undefined;
}

function fieldPath(prefix: string, path: PropertyKey[]): string {
  return path.reduce<string>((acc, part) => (typeof part === "number" ? `${acc}[${part}]` : `${acc}.${String(part)}`), prefix);
}
