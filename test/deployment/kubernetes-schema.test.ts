/** The offline Kubernetes schema check the Helm tests rely on refuses what the API server would. */
import { describe, expect, it } from "vitest";
import type { JsonObject } from "../helpers/deployment.js";
import { modelModule, validateObjects } from "./kubernetes-schema.js";

const deployment = (container: JsonObject, spec: JsonObject = {}): JsonObject => ({
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name: "web" },
  spec: { selector: { matchLabels: { app: "web" } }, template: { metadata: { labels: { app: "web" } }, spec: { containers: [container] } }, ...spec },
});

describe("validateObjects", () => {
  it("accepts valid objects of the core, apps, KEDA and prometheus-operator APIs", async () => {
    const objects: JsonObject[] = [
      deployment({ name: "web", image: "web:1", ports: [{ name: "http", containerPort: 8080 }], resources: { requests: { cpu: "100m" } } }),
      { apiVersion: "v1", kind: "Service", metadata: { name: "web" }, spec: { ports: [{ port: 80, targetPort: "http" }] } },
      { apiVersion: "keda.sh/v1alpha1", kind: "ScaledObject", metadata: { name: "web" }, spec: { scaleTargetRef: { name: "web" }, triggers: [{ type: "postgresql", metadata: { query: "select 1" } }] } },
      { apiVersion: "monitoring.coreos.com/v1", kind: "ServiceMonitor", metadata: { name: "web" }, spec: { selector: {}, endpoints: [{ port: "http" }] } },
    ];
    expect(await validateObjects(objects)).toEqual([]);
  });

  it("rejects unknown fields at any depth, wrong types, missing required fields and unknown kinds", async () => {
    const problems = await validateObjects([
      deployment({ name: "web", image: "web:1", imagePullPolice: "Never" }),
      deployment({ name: "web", image: "web:1" }, { replicas: "2" }),
      { apiVersion: "v1", kind: "Service", metadata: { name: "svc" }, spec: { ports: [{ port: 80, tragetPort: 8080 }] } },
      { apiVersion: "keda.sh/v1alpha1", kind: "ScaledObject", metadata: { name: "so" }, spec: { scaleTargetRef: { name: "web", kind2: "x" }, triggers: [] } },
      { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "bare" }, spec: { template: {} } },
      { apiVersion: "apps/v1", kind: "Deploiement", metadata: { name: "typo" } },
      { apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w" } },
    ]);
    const text = problems.join("\n");
    expect(text).toMatch(/Deployment web: .*'"?imagePullPolice"?' does not exist/);
    expect(text).toMatch(/Deployment web: .*replicas must be integer/);
    expect(text).toMatch(/Service svc: .*'"?tragetPort"?' does not exist/);
    expect(text).toMatch(/ScaledObject so: .*'"?kind2"?' does not exist/);
    expect(text).toMatch(/Deployment bare: .*selector/);
    expect(text).toMatch(/Deploiement typo: no schema/);
    expect(text).toMatch(/Widget w: no schema for apiVersion example.com\/v1/);
  });

  it("maps API groups to the model packages", () => {
    expect(modelModule("v1", "Secret")).toBe("kubernetes-models/v1/Secret");
    expect(modelModule("policy/v1", "PodDisruptionBudget")).toBe("kubernetes-models/policy/v1/PodDisruptionBudget");
    expect(modelModule("networking.k8s.io/v1", "Ingress")).toBe("kubernetes-models/networking.k8s.io/v1/Ingress");
    expect(modelModule("example.com/v1", "Widget")).toBeUndefined();
  });
});
