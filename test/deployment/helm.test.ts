/**
 * The Helm chart, with the real helm v4 binary (scripts/k8s-tools.sh): lint, and every documented value
 * set rendered, each object validated against the Kubernetes schemas (unknown fields rejected), with
 * what every install needs for the service to work (commands, probes, security, the helm test).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { type JsonObject, configVariables, parseCli } from "../helpers/deployment.js";
import { at, byKind, chartDir, containers, envOf, external, helm, helmBinary, kindValues, named, podSpec, render, serviceWorkloads } from "./helm.js";
import { validateObjects } from "./kubernetes-schema.js";

/** Every value set the README and values.yaml document, plus every optional feature turned on. */
const valueSets: Record<string, { values: JsonObject[]; extra?: string[] }> = {
  "values-kind.yaml": { values: [], extra: kindValues },
  "a database URL (token generated)": { values: [external] },
  "an existing Secret": { values: [{ existingSecret: { name: "task-secrets" } }] },
  "insecure, shell on": { values: [external, { server: { allowInsecure: true }, enableShell: true }] },
  "worker HPA": { values: [external, { worker: { autoscaling: { enabled: true } } }] },
  "TLS from a Secret, scraped over HTTPS": { values: [external, { server: { tls: { enabled: true, secretName: "task-api-tls" } }, serviceMonitor: { enabled: true } }] },
  everything: {
    values: [
      external,
      {
        image: { digest: `sha256:${"ab".repeat(32)}` },
        apiTokens: ["0123456789abcdef-one", "ci:operator:0123456789abcdef-two"],
        shellRole: "operator",
        queryTargets: { reports: "postgres://reports:secret@db.example:5432/reports" },
        extraEnv: [{ name: "SMTP_URL", valueFrom: { secretKeyRef: { name: "smtp", key: "url" } } }],
        extraVolumes: [{ name: "ca", configMap: { name: "company-ca" } }],
        extraVolumeMounts: [{ name: "ca", mountPath: "/etc/company-ca", readOnly: true }],
        ingress: { enabled: true, className: "nginx", tls: [{ secretName: "task-tls", hosts: ["task-service.local"] }] },
        worker: { keda: { enabled: true } },
        serviceMonitor: { enabled: true, labels: { release: "prometheus" }, tokenSecret: { name: "prometheus-token", key: "token" } },
        networkPolicy: { enabled: true, apiFrom: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "ingress-nginx" } } }] },
        schedules: [{ name: "heartbeat", cron: "* * * * *", type: "noop", overlap: "skip" }],
        schedulesPrune: true,
      },
    ],
  },
  "in-chart PostgreSQL without the playground, insecure": { values: [{ postgresql: { enabled: true, playground: false }, server: { allowInsecure: true } }] },
  "values-kind.yaml with network policies and query targets": {
    values: [{ networkPolicy: { enabled: true }, queryTargets: { reports: "postgres://reports:secret@db.example:5432/reports" } }],
    extra: kindValues,
  },
};

beforeAll(() => {
  helmBinary();
}, 120_000);

describe("helm lint --strict", () => {
  it.each([
    ["values-kind.yaml", kindValues, []],
    ["a database URL", [], [external]],
    ["everything", [], valueSets.everything!.values],
  ] as const)("passes with %s", async (_, extra, values) => {
    const result = await helm(["lint", "--strict", chartDir, ...extra], [...values]);
    expect(result.stdout + result.stderr, "helm lint").toContain("1 chart(s) linted, 0 chart(s) failed");
    expect(result.code).toBe(0);
  });

  it("checks the schema but leaves the chart's own refusals (fail) to install: lint mode logs them only", async () => {
    const result = await helm(["lint", "--strict", chartDir]);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain("task-service: no database");
  });
});

describe("helm template", () => {
  it("refuses the defaults with a message naming the values to set", async () => {
    const { result } = await render();
    expect(result.code).not.toBe(0);
    const install = await helm(["install", "task", chartDir, "--dry-run=client"]);
    expect(install.code).not.toBe(0);
    expect(install.stderr).toContain("task-service: no database: set databaseUrl=");
    expect(result.stderr).toMatch(/task-service: no database: set databaseUrl=postgres:\/\/.*, or existingSecret.name .*, or postgresql.enabled=true/);
  });

  describe.each(Object.entries(valueSets))("with %s", (_, { values, extra }) => {
    const tls = values.some((v) => at(v, "server", "tls", "enabled") === true);
    let objects: JsonObject[] = [];
    beforeAll(async () => {
      const rendered = await render(values, extra);
      expect(rendered.result.stderr, "helm template").toBe("");
      expect(rendered.result.code).toBe(0);
      objects = rendered.objects;
    }, 60_000);

    it("renders objects that are valid against the Kubernetes schemas, unknown fields rejected", async () => {
      expect(objects.length).toBeGreaterThan(5);
      expect(await validateObjects(objects)).toEqual([]);
    });

    it("runs every service container as the chart's non-root user on a read-only root, with resource requests, without an API token", () => {
      for (const o of serviceWorkloads(objects)) {
        const spec = podSpec(o);
        expect(spec.automountServiceAccountToken, `${o.kind} ${at(o, "metadata", "name")}`).toBe(false);
        expect(at(spec, "securityContext", "runAsNonRoot")).toBe(true);
        expect(at(spec, "securityContext", "runAsUser")).toBe(1000);
        for (const c of containers(o)) {
          expect(at(c, "securityContext", "readOnlyRootFilesystem"), `${c.name}`).toBe(true);
          expect(at(c, "securityContext", "allowPrivilegeEscalation"), `${c.name}`).toBe(false);
          expect(at(c, "securityContext", "capabilities", "drop"), `${c.name}`).toEqual(["ALL"]);
          expect(at(c, "resources", "requests", "cpu"), `${c.name}: a CPU request`).toBeDefined();
          expect(at(c, "resources", "requests", "memory"), `${c.name}: a memory request`).toBeDefined();
          expect(((c.volumeMounts as JsonObject[]) ?? []).map((m) => m.mountPath)).toContain("/tmp");
        }
      }
      const accounts = byKind(objects, "ServiceAccount");
      expect(accounts).toHaveLength(1);
      expect(accounts[0]!.automountServiceAccountToken).toBe(false);
    });

    it("runs existing task-cli commands with their configuration variables only", () => {
      for (const o of serviceWorkloads(objects)) {
        for (const c of containers(o)) {
          if (o.kind === "Pod") continue; // the helm test's shell script, checked below
          if (at(o, "metadata", "labels", "app.kubernetes.io/component") === "schedules") continue; // a shell script too: helm-schedules.test.ts
          const args = c.args as string[];
          expect(["server", "serve", "migrate"]).toContain(parseCli(args).command);
          for (const name of envOf(c).keys()) {
            // TASK_CHART_* are the chart's own parts of DATABASE_URL and TASK_QUERY_TARGETS ($(NAME) expansion).
            if (name.startsWith("TASK_CHART_") || name === "SMTP_URL") continue;
            expect(configVariables, `${c.name}: env ${name}`).toContain(name);
          }
          const env = envOf(c);
          const database = env.get("DATABASE_URL");
          expect(database, `${c.name}: DATABASE_URL`).toBeDefined();
          // A variable can only expand those defined before it.
          const value = database!.value;
          if (typeof value === "string") {
            for (const ref of value.matchAll(/\$\(([A-Z_]+)\)/g)) expect([...env.keys()].indexOf(ref[1]!), `${ref[1]} before DATABASE_URL`).toBeLessThan([...env.keys()].indexOf("DATABASE_URL"));
          }
          for (const [name, e] of env) {
            if (["DATABASE_URL", "TASK_API_TOKENS", "TASK_QUERY_TARGETS"].includes(name) && typeof e.value === "string") {
              expect(e.value, `${name} holds no password in plain text`).not.toMatch(/:\/\/[^:]+:[^$][^@]*@/);
            }
          }
        }
      }
    });

    it("has a server with probes and tokens or the insecure switch, and workers with a long enough grace period", () => {
      const server = named(objects, "Deployment", "-server");
      const [container] = containers(server);
      const certificate = ["--tls-cert", "/etc/task-service/tls/tls.crt", "--tls-key", "/etc/task-service/tls/tls.key"];
      expect(container!.args).toEqual(["server", "--host", "0.0.0.0", ...(tls ? certificate : [])]);
      expect(at(container, "readinessProbe", "httpGet", "path")).toBe("/readyz");
      expect(at(container, "livenessProbe", "httpGet", "path")).toBe("/healthz");
      for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) expect(at(container, probe, "httpGet", "scheme"), probe).toBe(tls ? "HTTPS" : undefined);
      // The certificate's Secret is mounted where --tls-cert/--tls-key point, read-only, in the server only.
      const mount = ((container!.volumeMounts as JsonObject[]) ?? []).find((m) => m.mountPath === "/etc/task-service/tls");
      expect(mount && { readOnly: mount.readOnly, secret: at(((podSpec(server).volumes as JsonObject[]) ?? []).find((v) => v.name === mount.name), "secret", "secretName") }).toEqual(
        tls ? { readOnly: true, secret: "task-api-tls" } : undefined,
      );
      if (tls) {
        const monitor = objects.find((o) => o.kind === "ServiceMonitor" && String(at(o, "metadata", "name")).endsWith("-server"));
        expect(at(monitor, "spec", "endpoints", 0, "scheme")).toBe("https");
        expect(at(monitor, "spec", "endpoints", 0, "tlsConfig", "ca", "secret")).toEqual({ name: "task-api-tls", key: "ca.crt" });
      }
      const env = envOf(container!);
      expect(env.has("TASK_API_TOKENS") || env.get("TASK_ALLOW_INSECURE")?.value === "true").toBe(true);
      const worker = named(objects, "Deployment", "-worker");
      const [w] = containers(worker);
      expect(parseCli(w!.args as string[]).command).toBe("serve");
      const grace = podSpec(worker).terminationGracePeriodSeconds as number;
      expect(grace * 1000).toBeGreaterThan(Number(envOf(w!).get("TASK_SHUTDOWN_GRACE_MS")!.value));
    });

    it("has a helm test that creates a task through the Service and waits for SUCCEEDED", () => {
      const tests = objects.filter((o) => at(o, "metadata", "annotations", "helm.sh/hook") === "test");
      expect(tests).toHaveLength(1);
      const [c] = containers(tests[0]!);
      const script = (c!.args as string[]).join("\n");
      // Every task-cli call in the script, parsed by the real program (an unknown flag or a missing one throws).
      const calls = [...script.matchAll(/node bin\/task-cli\.js ([^|\n)]*)/g)].map((m) => m[1]!.trim().replace(/"\$id"/g, "1").split(/\s+/));
      expect(calls.map((args) => parseCli(args).command)).toEqual(["create", "watch"]);
      expect(calls[0]).toEqual(["-o", "json", "task", "create", "helm-test", "--type", "noop"]);
      expect(parseCli(calls[1]!).opts).toMatchObject({ id: "1" });
      const service = named(objects, "Service", "task-service");
      expect(envOf(c!).get("TASK_ADDRESS")!.value).toBe(`${tls ? "https" : "http"}://${at(service, "metadata", "name")}:${at(service, "spec", "ports", 0, "port")}`);
      // Over TLS it trusts the CA of the server's Secret, and mounts nothing else of it (no private key).
      expect(envOf(c!).get("TASK_CA")?.value).toBe(tls ? "/etc/task-service/tls/ca.crt" : undefined);
      const secretVolume = ((podSpec(tests[0]!).volumes as JsonObject[]) ?? []).find((v) => v.secret);
      expect(at(secretVolume, "secret", "items")).toEqual(tls ? [{ key: "ca.crt", path: "ca.crt" }] : undefined);
    });
  });
});
