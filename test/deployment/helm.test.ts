/**
 * The Helm chart, with the real helm v4 binary: lint, every documented value set rendered and each object
 * validated against the Kubernetes schemas (unknown fields rejected), bad values refused by
 * values.schema.json or the chart's own checks with a message naming the value, and what the rendered
 * objects must say for the service to work (commands, probes, security, secrets, migration order).
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { sql } from "kysely";
import { beforeAll, describe, expect, it } from "vitest";
import { parse as parseYamlText } from "yaml";
import { insertTasks } from "../../src/store/tasks.js";
import { createTestDatabase } from "../helpers/database.js";
import { read, type Json, type JsonObject, isObject, configVariables, defaults, parseCli } from "../helpers/deployment.js";
import { chartDir, helm, helmBinary, render } from "./helm.js";
import { validateObjects } from "./kubernetes-schema.js";

const kindValues = ["-f", path.join(chartDir, "values-kind.yaml")];
const external = { databaseUrl: "postgres://task:secret@db.example:5432/tasks" };

/** Every value set the README and values.yaml document, plus every optional feature turned on. */
const valueSets: Record<string, { values: JsonObject[]; extra?: string[] }> = {
  "values-kind.yaml": { values: [], extra: kindValues },
  "a database URL (token generated)": { values: [external] },
  "an existing Secret": { values: [{ existingSecret: { name: "task-secrets" } }] },
  "insecure, shell on": { values: [external, { server: { allowInsecure: true }, enableShell: true }] },
  "worker HPA": { values: [external, { worker: { autoscaling: { enabled: true } } }] },
  everything: {
    values: [
      external,
      {
        image: { digest: `sha256:${"ab".repeat(32)}` },
        apiTokens: ["0123456789abcdef-one", "0123456789abcdef-two"],
        queryTargets: { reports: "postgres://reports:secret@db.example:5432/reports" },
        extraEnv: [{ name: "SMTP_URL", valueFrom: { secretKeyRef: { name: "smtp", key: "url" } } }],
        extraVolumes: [{ name: "ca", configMap: { name: "company-ca" } }],
        extraVolumeMounts: [{ name: "ca", mountPath: "/etc/company-ca", readOnly: true }],
        ingress: { enabled: true, className: "nginx", tls: [{ secretName: "task-tls", hosts: ["task-service.local"] }] },
        worker: { keda: { enabled: true } },
        serviceMonitor: { enabled: true, labels: { release: "prometheus" } },
        networkPolicy: { enabled: true, apiFrom: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "ingress-nginx" } } }] },
      },
    ],
  },
  "in-chart PostgreSQL without the playground, insecure": { values: [{ postgresql: { enabled: true, playground: false }, server: { allowInsecure: true } }] },
  "values-kind.yaml with network policies and query targets": {
    values: [{ networkPolicy: { enabled: true }, queryTargets: { reports: "postgres://reports:secret@db.example:5432/reports" } }],
    extra: kindValues,
  },
};

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
  // The chart's own checks (templates/_helpers.tpl "task-service.validate"), on otherwise valid values.
  { values: { ...external, worker: { terminationGracePeriodSeconds: 20 } }, names: "worker.terminationGracePeriodSeconds" },
  { values: { ...external, worker: { autoscaling: { enabled: true }, keda: { enabled: true } } }, names: "worker.keda.enabled" },
  { values: { ...external, worker: { autoscaling: { enabled: true, minReplicas: 5, maxReplicas: 2 } } }, names: "worker.autoscaling.minReplicas" },
  { values: { ...external, worker: { metricsPort: 0 }, serviceMonitor: { enabled: true } }, names: "worker.metricsPort" },
  { values: { ...external, postgresql: { enabled: true } }, names: "postgresql.enabled" },
  { values: { postgresql: { enabled: true }, queryTargets: { playground: "postgres://p:p@elsewhere/playground" } }, names: "queryTargets.playground" },
];

const byKind = (objects: JsonObject[], kind: string) => objects.filter((o) => o.kind === kind);
const named = (objects: JsonObject[], kind: string, suffix: string) => {
  const found = objects.find((o) => o.kind === kind && String((o.metadata as JsonObject).name).endsWith(suffix));
  expect(found, `${kind} *${suffix}`).toBeDefined();
  return found!;
};
const at = (node: Json | undefined, ...keys: (string | number)[]): Json | undefined => {
  let current = node;
  for (const key of keys) {
    if (current === null || typeof current !== "object") return undefined;
    current = (current as Record<string, Json>)[key as string];
  }
  return current;
};
/** The pod spec of a Deployment, StatefulSet, Job or Pod. */
const podSpec = (o: JsonObject): JsonObject => (o.kind === "Pod" ? (o.spec as JsonObject) : (at(o, "spec", "template", "spec") as JsonObject));
const containers = (o: JsonObject) => (podSpec(o).containers as JsonObject[]) ?? [];
const envOf = (container: JsonObject) => new Map(((container.env as JsonObject[]) ?? []).map((e) => [e.name as string, e]));
const workloads = (objects: JsonObject[]) => objects.filter((o) => ["Deployment", "StatefulSet", "Job", "Pod"].includes(o.kind as string));
const serviceWorkloads = (objects: JsonObject[]) => workloads(objects).filter((o) => at(o, "metadata", "labels", "app.kubernetes.io/component") !== "postgresql");

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
      expect(container!.args).toEqual(["server", "--host", "0.0.0.0"]);
      expect(at(container, "readinessProbe", "httpGet", "path")).toBe("/readyz");
      expect(at(container, "livenessProbe", "httpGet", "path")).toBe("/healthz");
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
      expect(envOf(c!).get("TASK_ADDRESS")!.value).toBe(`http://${at(service, "metadata", "name")}:${at(service, "spec", "ports", 0, "port")}`);
    });
  });
});

describe("the chart with values-kind.yaml", () => {
  let objects: JsonObject[] = [];
  beforeAll(async () => {
    objects = (await render([], kindValues)).objects;
  }, 60_000);

  it("renders a complete install: its own PostgreSQL, a generated token, server, worker, migrate Job and test", () => {
    const kinds = objects.map((o) => `${o.kind as string} ${(o.metadata as JsonObject).name as string}`).sort();
    expect(kinds).toEqual(
      [
        "ConfigMap task-task-service-postgresql-init",
        "Deployment task-task-service-server",
        "Deployment task-task-service-worker",
        "Job task-task-service-migrate",
        "Pod task-task-service-test-task",
        "Secret task-task-service",
        "Secret task-task-service-postgresql",
        "Service task-task-service",
        "Service task-task-service-postgresql",
        "Service task-task-service-worker-metrics",
        "ServiceAccount task-task-service",
        "StatefulSet task-task-service-postgresql",
      ].sort(),
    );
    for (const o of workloads(objects).filter((x) => at(x, "metadata", "labels", "app.kubernetes.io/component") !== "postgresql")) {
      for (const c of containers(o)) {
        expect(c.image).toBe("task-service:0.1.0");
        expect(c.imagePullPolicy, "kind load docker-image: never pulled").toBe("Never");
      }
    }
  });

  it("generates the API token and keeps the PostgreSQL passwords across uninstall", () => {
    const secret = named(objects, "Secret", "task-service");
    const token = Buffer.from(at(secret, "data", "TASK_API_TOKENS") as string, "base64").toString();
    expect(token).toMatch(/^[A-Za-z0-9]{40}$/);
    const pg = named(objects, "Secret", "-postgresql");
    expect(at(pg, "metadata", "annotations", "helm.sh/resource-policy")).toBe("keep");
    for (const key of ["password", "playground-password"]) expect(Buffer.from(at(pg, "data", key) as string, "base64").toString()).toMatch(/^[A-Za-z0-9]{32}$/);
    // lookup keeps both on upgrade: the templates read the Secret back before generating.
    expect(read("charts/task-service/templates/secret.yaml")).toMatch(/lookup "v1" "Secret" \.Release\.Namespace \$name/);
    expect(read("charts/task-service/templates/postgresql.yaml")).toMatch(/lookup "v1" "Secret" \.Release\.Namespace \$name/);
  });

  it("puts DATABASE_URL and the playground target together from the generated passwords, for the in-chart Service", () => {
    const server = named(objects, "Deployment", "-server");
    const env = envOf(containers(server)[0]!);
    expect(env.get("DATABASE_URL")!.value).toBe("postgres://task:$(TASK_CHART_POSTGRES_PASSWORD)@task-task-service-postgresql:5432/tasks");
    expect(at(env.get("TASK_CHART_POSTGRES_PASSWORD"), "valueFrom", "secretKeyRef")).toEqual({ name: "task-task-service-postgresql", key: "password" });
    expect(env.get("TASK_QUERY_TARGETS")!.value).toBe("playground=postgres://playground:$(TASK_CHART_PLAYGROUND_PASSWORD)@task-task-service-postgresql:5432/playground");
    const statefulSet = named(objects, "StatefulSet", "-postgresql");
    const pgEnv = envOf(containers(statefulSet)[0]!);
    expect(at(pgEnv.get("POSTGRES_USER"), "value")).toBe("task");
    expect(at(pgEnv.get("POSTGRES_DB"), "value")).toBe("tasks");
    expect(at(pgEnv.get("POSTGRES_PASSWORD"), "valueFrom", "secretKeyRef")).toEqual({ name: "task-task-service-postgresql", key: "password" });
    expect(at(statefulSet, "spec", "volumeClaimTemplates", 0, "spec", "resources", "requests", "storage")).toBe("1Gi");
  });

  it("migrates after install (the database is part of the release), not before it exists", () => {
    const job = named(objects, "Job", "-migrate");
    // The Job, the server and the workers wait for PostgreSQL to accept connections before they start.
    for (const o of [job, named(objects, "Deployment", "-server"), named(objects, "Deployment", "-worker")]) {
      const [init] = (podSpec(o).initContainers as JsonObject[]) ?? [];
      expect(init?.name, `${at(o, "metadata", "name")}`).toBe("wait-for-postgresql");
      expect((init!.command as string[]).join(" ")).toContain("pg_isready");
      expect(envOf(init!).get("PGHOST")!.value).toBe(at(named(objects, "Service", "-postgresql"), "metadata", "name"));
    }
    expect(at(job, "metadata", "annotations", "helm.sh/hook")).toBe("post-install,post-upgrade");
    expect(containers(job)[0]!.args).toEqual(["migrate"]);
    expect(objects.some((o) => at(o, "metadata", "annotations", "helm.sh/hook") === "pre-install,pre-upgrade"), "no pre-install hook").toBe(false);
  });

  it("gives the playground init script the same isolation as docker compose's", () => {
    const init = named(objects, "ConfigMap", "-postgresql-init");
    const script = at(init, "data", "10-playground.sh") as string;
    expect(script).toBe(readFileSync(path.join(chartDir, "files", "postgresql-init.sh"), "utf8"));
    const compose = read("deploy/postgres-init/10-playground.sql");
    for (const statement of ["CREATE ROLE playground LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD", "CREATE DATABASE playground OWNER playground;", "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;"]) {
      expect(script).toContain(statement);
      expect(compose).toContain(statement);
    }
  });
});

describe("the chart with a database URL", () => {
  it("migrates before install and upgrade, from a hook Secret that exists before the Job", async () => {
    const { objects } = await render([external]);
    const job = named(objects, "Job", "-migrate");
    expect(at(job, "metadata", "annotations", "helm.sh/hook")).toBe("pre-install,pre-upgrade");
    const hookSecret = named(objects, "Secret", "-migrate");
    expect(Number(at(hookSecret, "metadata", "annotations", "helm.sh/hook-weight"))).toBeLessThan(Number(at(job, "metadata", "annotations", "helm.sh/hook-weight")));
    expect(Buffer.from(at(hookSecret, "data", "DATABASE_URL") as string, "base64").toString()).toBe(external.databaseUrl);
    // The chart's ServiceAccount does not exist yet when a pre-install hook runs.
    expect(podSpec(job).serviceAccountName).toBeUndefined();
    for (const o of workloads(objects)) expect(podSpec(o).initContainers, "nothing to wait for").toBeUndefined();
    expect(objects.some((o) => o.kind === "StatefulSet")).toBe(false);
  });

  it("pins the image by digest when one is given, and defaults to the appVersion tag", async () => {
    const digest = `sha256:${"0f".repeat(32)}`;
    const pinned = (await render([external, { image: { digest, repository: "registry.example/task-service" } }])).objects;
    for (const o of workloads(pinned)) for (const c of containers(o)) expect(c.image).toBe(`registry.example/task-service@${digest}`);
    const tagged = (await render([external])).objects;
    for (const o of workloads(tagged)) for (const c of containers(o)) expect(c.image).toBe("task-service:0.1.0");
  });

  it("scales workers with KEDA on a query that counts the tasks waiting or running in a real database", async () => {
    const { objects } = await render([external, { worker: { keda: { enabled: true, targetTasksPerWorker: 0 } } }]);
    const scaled = named(objects, "ScaledObject", "-worker");
    const worker = named(objects, "Deployment", "-worker");
    expect(at(scaled, "spec", "scaleTargetRef", "name")).toBe(at(worker, "metadata", "name"));
    expect(at(worker, "spec", "replicas"), "the scaler owns replicas").toBeUndefined();
    const trigger = at(scaled, "spec", "triggers", 0) as JsonObject;
    expect(trigger.type).toBe("postgresql");
    expect(at(trigger, "metadata", "connectionFromEnv")).toBe("DATABASE_URL");
    expect(envOf(containers(worker)[0]!).has("DATABASE_URL")).toBe(true);
    expect(at(trigger, "metadata", "targetQueryValue")).toBe(String(defaults.workerConcurrency));
    // The query runs against the migrated schema and counts the tasks due now (not those scheduled later).
    const database = await createTestDatabase();
    try {
      const query = at(trigger, "metadata", "query") as string;
      const count = async () => Number(((await sql.raw(query).execute(database.db.kysely)).rows[0] as { count: string }).count);
      expect(await count()).toBe(0);
      const task = { type: "noop", parameters: {}, priority: 0, maxAttempts: 1, timeoutMs: 1000, runAt: null, idempotencyKey: null, requestHash: null };
      await insertTasks(database.db, [{ ...task, name: "now" }, { ...task, name: "soon" }, { ...task, name: "later", runAt: new Date(Date.now() + 3_600_000) }]);
      expect(await count()).toBe(2);
    } finally {
      await database.drop();
    }
  });

  it("spreads pods over nodes and keeps one of each up in a drain", async () => {
    const { objects } = await render([external]);
    for (const component of ["server", "worker"]) {
      const deployment = named(objects, "Deployment", `-${component}`);
      expect(at(podSpec(deployment), "topologySpreadConstraints", 0, "labelSelector", "matchLabels", "app.kubernetes.io/component")).toBe(component);
      const pdb = named(objects, "PodDisruptionBudget", `-${component}`);
      expect(at(pdb, "spec", "selector", "matchLabels")).toEqual(at(deployment, "spec", "selector", "matchLabels"));
    }
  });
});

describe("NOTES.txt", () => {
  it("exports TASK_TOKEN from the generated Secret, then runs task-cli", async () => {
    const result = await helm(["install", "task", chartDir, "--namespace", "tasks", "--dry-run=client", ...kindValues]);
    expect(result.stderr).toBe("");
    const notes = result.stdout.slice(result.stdout.indexOf("NOTES:"));
    expect(notes).toContain("export TASK_TOKEN=$(kubectl --namespace tasks get secret task-task-service -o jsonpath='{.data.TASK_API_TOKENS}' | base64 -d | cut -d, -f1)");
    expect(notes).toContain("kubectl --namespace tasks port-forward service/task-task-service 8080:8080");
    expect(notes).toContain("./bin/task-cli.js task create hello --type noop");
    expect(notes).toContain("helm test task --namespace tasks");
  });
});

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

describe("README", () => {
  const readme = read("README.md");
  /** A section's text, up to the next heading of its level or above (outside code blocks). */
  const section = (title: string) => {
    const lines = readme.split("\n");
    const start = lines.indexOf(title);
    expect(start, title).toBeGreaterThan(0);
    const level = title.split(" ")[0]!.length;
    let fenced = false;
    let end = lines.length;
    for (let i = start + 1; i < lines.length; i++) {
      if (lines[i]!.startsWith("```")) fenced = !fenced;
      const heading = /^(#+) /.exec(lines[i]!);
      if (!fenced && heading && heading[1]!.length <= level) {
        end = i;
        break;
      }
    }
    return lines.slice(start, end).join("\n");
  };

  it("describes the deployment files, before Development", () => {
    const deployment = readme.indexOf("\n## Deployment\n");
    expect(deployment).toBeGreaterThan(0);
    expect(deployment).toBeLessThan(readme.indexOf("\n## Development\n"));
    const text = section("## Deployment");
    for (const t of ["docker-compose.yaml", "docker compose -f docker-compose.demo.yaml up --build", "helm install task charts/task-service", "Dockerfile", "Compose v2"]) expect(text).toContain(t);
  });

  it("walks through Kind with the names the chart renders", async () => {
    const kind = section("### Kubernetes with Kind");
    const { objects } = await render([], kindValues);
    const image = containers(named(objects, "Deployment", "-server"))[0]!.image as string;
    expect(kind).toContain(`docker build -t ${image} .`);
    expect(kind).toContain(`kind load docker-image ${image}`);
    expect(kind).toContain("helm install task charts/task-service -f charts/task-service/values-kind.yaml");
    const service = at(named(objects, "Service", "task-service"), "metadata", "name") as string;
    expect(kind).toContain(`kubectl port-forward service/${service} 8080:${at(named(objects, "Service", "task-service"), "spec", "ports", 0, "port")}`);
    const secret = at(named(objects, "Secret", "task-service"), "metadata", "name") as string;
    expect(kind).toContain(`export TASK_TOKEN=$(kubectl get secret ${secret} -o jsonpath='{.data.TASK_API_TOKENS}' | base64 -d | cut -d, -f1)`);
    for (const step of ["helm test task", "./bin/task-cli.js task create hello --type noop", "helm uninstall task", "kubectl delete pvc,secret -l app.kubernetes.io/instance=task"]) expect(kind).toContain(step);
    // What the uninstall step deletes carries that label: the kept Secret and the StatefulSet's claims.
    expect(at(named(objects, "Secret", "-postgresql"), "metadata", "labels", "app.kubernetes.io/instance")).toBe("task");
    expect(at(named(objects, "StatefulSet", "-postgresql"), "spec", "volumeClaimTemplates", 0, "metadata", "labels", "app.kubernetes.io/instance")).toBe("task");
  });
});
