/** values.schema.json covers every value, and bad values fail at `helm install` with a message naming the value. */
import { readFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parse as parseYamlText } from "yaml";
import { read, type Json, type JsonObject, isObject } from "../helpers/deployment.js";
import { at, chartDir, external, helm, helmBinary, render } from "./helm.js";

beforeAll(() => {
  helmBinary();
}, 120_000);

/**
 * Values that must not install: values.schema.json refuses types, ranges, enums and unknown keys; the
 * chart's checks refuse combinations. Each names the value in its message.
 */
const badValues: { values: JsonObject; names: string }[] = [
  { values: { worker: { concurrency: "abc" } }, names: "/worker/concurrency" },
  { values: { worker: { concurrency: 0 } }, names: "/worker/concurrency" },
  { values: { worker: { concurency: 3 } }, names: "concurency" },
  { values: { wokrer: {} }, names: "wokrer" },
  { values: { server: { port: 70000 } }, names: "/server/port" },
  { values: { server: { replicas: "2" } }, names: "/server/replicas" },
  { values: { server: { service: { type: "Ingress" } } }, names: "/server/service/type" },
  { values: { logLevel: "verbose" }, names: "/logLevel" },
  { values: { image: { pullPolicy: "Sometimes" } }, names: "/image/pullPolicy" },
  { values: { image: { digest: "abc123" } }, names: "/image/digest" },
  { values: { image: { tag: "1.0 beta" } }, names: "/image/tag" },
  { values: { databaseUrl: "mysql://db/tasks" }, names: "/databaseUrl" },
  { values: { apiTokens: ["short"] }, names: "/apiTokens/0" },
  { values: { apiTokens: "0123456789abcdef-one" }, names: "/apiTokens" },
  { values: { queryTargets: { reports: "reports-db:5432" } }, names: "/queryTargets/reports" },
  { values: { enableShell: "yes" }, names: "/enableShell" },
  { values: { resources: { requests: { cpu: "lots" } } }, names: "/resources/requests/cpu" },
  { values: { resources: { request: { cpu: "1" } } }, names: "request" },
  { values: { topologySpread: { whenUnsatisfiable: "Maybe" } }, names: "/topologySpread/whenUnsatisfiable" },
  { values: { worker: { podDisruptionBudget: { enabled: true, maxUnavailable: "half" } } }, names: "/worker/podDisruptionBudget/maxUnavailable" },
  { values: { postgresql: { enabled: "true" } }, names: "/postgresql/enabled" },
  { values: { postgresql: { enabled: true, username: "playground" } }, names: "/postgresql/username" },
  { values: { serviceMonitor: { interval: "often" } }, names: "/serviceMonitor/interval" },
  { values: { ingress: { enabled: true, hosts: [{ host: "x", paths: [{ path: "api", pathType: "Prefix" }] }] } }, names: "/ingress/hosts/0/paths/0/path" },
  { values: { extraEnv: [{ value: "x" }] }, names: "name" },
  { values: { schedules: [{ name: "a", cron: "* * * * *", type: "noop", overlap: "sometimes" }] }, names: "/schedules/0/overlap" },
  { values: { schedules: [{ name: "a", cron: "* * * * *", type: "noop", catch_up: "all" }] }, names: "/schedules/0/catch_up" },
  { values: { schedules: [{ name: "a", cron: 5, type: "noop" }] }, names: "/schedules/0/cron" },
  { values: { schedules: [{ name: "a", cron: "* * * * *", type: "noop", timeout: "30" }] }, names: "/schedules/0/timeout" },
  { values: { schedules: [{ name: "a", cron: "* * * * *", type: "noop", max_attempts: "3" }] }, names: "/schedules/0/max_attempts" },
  { values: { schedules: [{ name: "a", cron: "* * * * *", type: "noop", paused: "yes" }] }, names: "/schedules/0/paused" },
  { values: { schedules: [{ name: "a", cron: "* * * * *", type: "noop", timezone: "UTC" }] }, names: "timezone" },
  { values: { schedules: [{ name: "a", cron: "* * * * *" }] }, names: "type" },
  { values: { schedules: { a: { cron: "* * * * *", type: "noop" } } }, names: "/schedules" },
  { values: { schedulesPrune: "true" }, names: "/schedulesPrune" },
  // The chart's own checks (templates/_helpers.tpl "task-service.validate"), on otherwise valid values.
  { values: { ...external, worker: { terminationGracePeriodSeconds: 20 } }, names: "worker.terminationGracePeriodSeconds" },
  { values: { ...external, worker: { autoscaling: { enabled: true }, keda: { enabled: true } } }, names: "worker.keda.enabled" },
  { values: { ...external, worker: { autoscaling: { enabled: true, minReplicas: 5, maxReplicas: 2 } } }, names: "worker.autoscaling.minReplicas" },
  { values: { ...external, worker: { metricsPort: 0 }, serviceMonitor: { enabled: true } }, names: "worker.metricsPort" },
  { values: { ...external, postgresql: { enabled: true } }, names: "postgresql.enabled" },
  { values: { ...external, server: { tls: { enabled: true } } }, names: "server.tls.secretName" },
  { values: { server: { tls: { enabled: "yes" } } }, names: "/server/tls/enabled" },
  { values: { postgresql: { enabled: true }, queryTargets: { playground: "postgres://p:p@elsewhere/playground" } }, names: "queryTargets.playground" },
];

describe("values.schema.json", () => {
  it("covers every value of values.yaml", () => {
    const schema = JSON.parse(read("charts/task-service/values.schema.json")) as JsonObject;
    const values = readYamlValues();
    const missing: string[] = [];
    const walk = (node: Json, schemaNode: JsonObject | undefined, prefix: string) => {
      if (!isObject(node) || Object.keys(node).length === 0) return;
      for (const [key, child] of Object.entries(node)) {
        const resolved = resolve(schema, schemaNode);
        const propertySchema = resolve(schema, at(resolved, "properties", key) as JsonObject | undefined);
        if (!propertySchema) {
          if (!isObject(at(resolved, "additionalProperties") as Json) && at(resolved, "type") !== "object") missing.push(`${prefix}${key}`);
          continue;
        }
        walk(child, propertySchema, `${prefix}${key}.`);
      }
    };
    walk(values, schema, "");
    expect(missing).toEqual([]);
    expect(schema.additionalProperties).toBe(false);
  });

  it.each(badValues.map((b) => [JSON.stringify(b.values), b] as const))("refuses %s at install, naming the value", async (_, { values, names }) => {
    const { result } = await render([values]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(names);
    // What a user runs: helm install, here without a cluster.
    const install = await helm(["install", "task", chartDir, "--namespace", "tasks", "--dry-run=client"], [values]);
    expect(install.code).not.toBe(0);
    expect(install.stderr).toContain(names);
    // helm lint catches the schema's refusals (it only logs the chart's fail checks).
    if (names.startsWith("/") || !names.includes(".")) expect((await helm(["lint", "--strict", chartDir], [values])).code).not.toBe(0);
  });
});

function readYamlValues(): JsonObject {
  return parseYamlText(readFileSync(path.join(chartDir, "values.yaml"), "utf8")) as JsonObject;
}

function resolve(schema: JsonObject, node: JsonObject | undefined): JsonObject | undefined {
  if (!node) return undefined;
  const ref = node.$ref;
  if (typeof ref === "string") return resolve(schema, at(schema, ...ref.replace(/^#\//, "").split("/")) as JsonObject);
  return node;
}
