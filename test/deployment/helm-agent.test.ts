/** charts/task-agent: a remote agent for another cluster (issue 26), checked with the real helm. */
import path from "node:path";
import { parseAllDocuments } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { root, type JsonObject } from "../helpers/deployment.js";
import { at, byKind, containers, envOf, helm, helmBinary, podSpec } from "./helm.js";
import { validateObjects } from "./kubernetes-schema.js";

const agentChart = path.join(root, "charts", "task-agent");
const minimal = { server: "https://tasks.example.com", token: { value: "agent-token-0123456789" } };

beforeAll(() => {
  helmBinary();
}, 120_000);

async function renderAgent(values: JsonObject[]): Promise<{ code: number; stderr: string; objects: JsonObject[] }> {
  const result = await helm(["template", "eu", agentChart, "--namespace", "agents"], values);
  const objects = result.code !== 0 ? [] : parseAllDocuments(result.stdout).map((d) => d.toJS() as JsonObject | null).filter((o): o is JsonObject => o !== null);
  return { code: result.code, stderr: result.stderr, objects };
}

describe("the task-agent chart", () => {
  it("passes helm lint --strict", async () => {
    const result = await helm(["lint", "--strict", agentChart], [minimal]);
    expect(result.stderr + result.stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    expect(result.code).toBe(0);
  });

  it("runs `task-cli agent` against the server addresses with the token from a Secret, and no database", async () => {
    const { code, stderr, objects } = await renderAgent([
      { ...minimal, server: "https://cp-a.example.com,https://cp-b.example.com", slots: 4, queues: ["remote", "gpu"], labels: { region: "eu", gpu: true }, http2: true, enableShell: true },
    ]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(await validateObjects(objects)).toEqual([]);
    expect(objects.map((o) => o.kind).sort()).toEqual(["Deployment", "Secret", "ServiceAccount"]);
    const deployment = byKind(objects, "Deployment")[0]!;
    const [agent] = containers(deployment);
    expect(agent!.args).toEqual(["agent", "--server", "https://cp-a.example.com,https://cp-b.example.com", "--name", "$(POD_NAME)", "-n", "4", "--queues", "remote,gpu", "--labels", "gpu=true,region=eu", "--http2"]);
    const env = envOf(agent!);
    expect(at(env.get("TASK_TOKEN"), "valueFrom", "secretKeyRef")).toEqual({ name: "eu-task-agent", key: "token" });
    expect(at(env.get("TASK_ENABLE_SHELL"), "value")).toBe("true");
    // No database credentials anywhere in the release.
    expect(JSON.stringify(objects)).not.toMatch(/DATABASE_URL|postgres:\/\//);
    expect(at(byKind(objects, "Secret")[0], "stringData", "token")).toBe("agent-token-0123456789");
    expect(podSpec(deployment).automountServiceAccountToken).toBe(false);
    // An agent listens on nothing.
    expect(agent!.ports).toBeUndefined();
  });

  it("reads the token from a Secret the operator manages, and trusts a private CA from a Secret", async () => {
    const { code, objects } = await renderAgent([{ server: "https://tasks.internal", token: { existingSecret: { name: "agent-eu", key: "secret" } }, ca: { secretName: "internal-ca" } }]);
    expect(code).toBe(0);
    expect(byKind(objects, "Secret")).toEqual([]);
    const deployment = byKind(objects, "Deployment")[0]!;
    const [agent] = containers(deployment);
    const env = envOf(agent!);
    expect(at(env.get("TASK_TOKEN"), "valueFrom", "secretKeyRef")).toEqual({ name: "agent-eu", key: "secret" });
    expect(at(env.get("TASK_CA"), "value")).toBe("/etc/task-agent/ca/ca.crt");
    expect((podSpec(deployment).volumes as JsonObject[]).find((v) => v.name === "ca")).toEqual({ name: "ca", secret: { secretName: "internal-ca" } });
  });

  it("refuses values that cannot work, naming them", async () => {
    const bad: [JsonObject, RegExp][] = [
      [{ token: minimal.token }, /server is required/],
      [{ server: "tasks.example.com", token: minimal.token }, /"tasks\.example\.com" is not an http/],
      [{ server: minimal.server }, /an agent token is required/],
      [{ ...minimal, token: { value: "x", existingSecret: { name: "s" } } }, /not both/],
      [{ ...minimal, slots: 0 }, /\/slots/],
      [{ ...minimal, slot: 3 }, /slot/],
      [{ ...minimal, logLevel: "verbose" }, /\/logLevel/],
    ];
    for (const [values, message] of bad) {
      const { code, stderr } = await renderAgent([values]);
      expect(code, JSON.stringify(values)).not.toBe(0);
      expect(stderr, JSON.stringify(values)).toMatch(message);
    }
  });
});
