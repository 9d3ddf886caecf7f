/** What the chart renders for each way of running it: the in-chart database (Kind), your database, the notes, the README's walkthrough. */
import { readFileSync } from "node:fs";
import path from "node:path";
import { sql } from "kysely";
import { beforeAll, describe, expect, it } from "vitest";
import { insertTasks } from "../../src/store/tasks.js";
import { createTestDatabase } from "../helpers/database.js";
import { read, type JsonObject, defaults } from "../helpers/deployment.js";
import { at, chartDir, containers, envOf, external, helm, helmBinary, kindValues, named, podSpec, render, workloads } from "./helm.js";

beforeAll(() => {
  helmBinary();
}, 120_000);

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
    expect(notes).toContain("export TASK_TOKEN=$(kubectl --namespace tasks get secret task-task-service -o jsonpath='{.data.TASK_API_TOKENS}' | base64 -d | cut -d, -f1 | sed -E 's/^[^:]+:(reader|operator|admin)://')");
    expect(notes).toContain("kubectl --namespace tasks port-forward service/task-task-service 8080:8080");
    expect(notes).toContain("./bin/task-cli.js task create hello --type noop");
    expect(notes).toContain("helm test task --namespace tasks");
  });
});

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
