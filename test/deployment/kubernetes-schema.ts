/**
 * Offline validation of Kubernetes objects against the API's schemas, unknown fields rejected (what the
 * API server's strict field validation does), without a cluster. Two checks, both from the OpenAPI schemas
 * that kubernetes-models (and its KEDA and prometheus-operator packages) are generated from:
 * - the models' validate(): types, required fields, formats and enums;
 * - the models' TypeScript interfaces, through the compiler: each object becomes an object literal that
 *   `satisfies` its interface, and excess property checks reject every field the schema does not have,
 *   at any depth (validate() lets unknown fields through).
 */
import { execFile } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { root, type Json, type JsonObject } from "../helpers/deployment.js";

const execFileAsync = promisify(execFile);

interface Model {
  validate(): void;
}
type ModelClass = new (data: JsonObject) => Model;

/** The package module that models apiVersion/kind; undefined for an API group we have no schemas for. */
export function modelModule(apiVersion: string, kind: string): string | undefined {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (!/^[A-Za-z]+$/.test(kind)) return undefined;
  if (group === "keda.sh") return `@kubernetes-models/keda/keda.sh/${version}/${kind}`;
  if (group === "monitoring.coreos.com") return `@kubernetes-models/prometheus-operator/monitoring.coreos.com/${version}/${kind}`;
  if (group === "") return `kubernetes-models/${version}/${kind}`;
  if (!group!.includes(".") || group!.endsWith(".k8s.io")) return `kubernetes-models/${group}/${version}/${kind}`;
  return undefined;
}

const describe = (o: JsonObject) => `${String(o.kind)} ${String((o.metadata as JsonObject | undefined)?.name)}`;

/** Every problem found in the objects, as "Kind name: message"; empty when all are valid. */
export async function validateObjects(objects: JsonObject[]): Promise<string[]> {
  const problems: string[] = [];
  const typed: { object: JsonObject; module: string }[] = [];
  for (const object of objects) {
    const module = typeof object.apiVersion === "string" && typeof object.kind === "string" ? modelModule(object.apiVersion, object.kind) : undefined;
    if (!module) {
      problems.push(`${describe(object)}: no schema for apiVersion ${String(object.apiVersion)}`);
      continue;
    }
    let Model: ModelClass | undefined;
    try {
      Model = ((await import(module)) as Record<string, ModelClass>)[object.kind as string];
    } catch {
      // Reported below.
    }
    if (!Model) {
      problems.push(`${describe(object)}: no schema for ${String(object.kind)} in ${String(object.apiVersion)}`);
      continue;
    }
    try {
      new Model(object).validate();
    } catch (err) {
      problems.push(`${describe(object)}: ${err instanceof Error ? err.message : String(err)}`);
    }
    typed.push({ object, module });
  }
  problems.push(...(await unknownFields(typed)));
  return problems;
}

/** Runs the compiler over one `satisfies` literal per object; an object's diagnostics name its line. */
async function unknownFields(typed: { object: JsonObject; module: string }[]): Promise<string[]> {
  if (typed.length === 0) return [];
  // Inside the repository, so the packages resolve from node_modules; .tools/ is git-ignored.
  const dir = path.join(root, ".tools", `schema-check-${process.pid}-${Date.now()}`);
  mkdirSync(dir, { recursive: true });
  try {
    const lines = typed.map(({ object, module }, i) => {
      const name = `I${object.kind as string}`;
      return `import type { ${name} as T${i} } from ${JSON.stringify(module)};\nexport const o${i} = ${JSON.stringify(object)} satisfies T${i};`;
    });
    writeFileSync(path.join(dir, "objects.ts"), `${lines.join("\n")}\n`);
    const tsconfig = {
      compilerOptions: { strict: true, noEmit: true, target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", skipLibCheck: true, types: [] },
      files: ["objects.ts"],
    };
    writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify(tsconfig));
    const tsgo = path.join(root, "node_modules", ".bin", "tsgo");
    let output = "";
    try {
      await execFileAsync(tsgo, ["-p", dir], { cwd: dir, maxBuffer: 16 * 1024 * 1024 });
      return [];
    } catch (err) {
      const failure = err as { stdout?: string; stderr?: string };
      output = `${failure.stdout ?? ""}${failure.stderr ?? ""}`;
    }
    const problems: string[] = [];
    for (const line of output.split("\n")) {
      const m = /^objects\.ts\((\d+),\d+\): error (TS\d+): (.*)$/.exec(line.trim());
      if (!m) continue;
      // Line 2i+1 imports object i's type, line 2i+2 holds its literal.
      const index = Math.floor((Number(m[1]) - 1) / 2);
      problems.push(`${describe(typed[index]!.object)}: ${m[3]}`);
    }
    if (problems.length === 0) problems.push(`the compiler failed without a diagnostic on the objects: ${output.trim()}`);
    return problems;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export type { Json };
