/** The Helm chart against the code and values.yaml (templates are checked with regular expressions: there is no helm here); and the README's deployment section. */
import { readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseDocument } from "yaml";
import { root, read, exists, type Json, parseYaml, isObject, cliVariables, configVariables, ENV_NAME, defaults, parseCli } from "../helpers/deployment.js";

const chartDir = "charts/task-service";
const templateDir = `${chartDir}/templates`;

describe("Helm chart", () => {
  const chart = parseYaml(`${chartDir}/Chart.yaml`);
  const values = parseYaml(`${chartDir}/values.yaml`);
  const templateFiles = readdirSync(path.join(root, templateDir)).sort();
  const templates = new Map(templateFiles.map((f) => [f, read(`${templateDir}/${f}`)]));
  const template = (name: string) => {
    const text = templates.get(name);
    expect(text, `${templateDir}/${name}`).toBeDefined();
    return text!;
  };

  /** The value at a dotted path of values.yaml, or undefined when a key on the way is missing. */
  function valueAt(dotted: string): { found: boolean; value?: Json } {
    let node: Json = values;
    for (const key of dotted.split(".")) {
      if (!isObject(node) || !Object.hasOwn(node, key)) return { found: false };
      node = node[key]!;
    }
    return { found: true, value: node };
  }

  /** `{{ .Values.a.b }}` replaced by the default value: enough for the plain substitutions in args. */
  const substitute = (text: string) =>
    text.replace(/\{\{-?\s*\.Values\.([\w.]+)\s*-?\}\}/g, (_, p: string) => {
      const { found, value } = valueAt(p);
      expect(found, `.Values.${p}`).toBe(true);
      return String(value);
    });

  /** The args of a template's container, as a list of strings. */
  function templateArgs(name: string): string[] {
    const match = /^\s*args:\s*(\[.*\])\s*$/m.exec(template(name));
    expect(match, `${name}: args as a one-line list`).not.toBeNull();
    return parseDocument(substitute(match![1]!)).toJS() as string[];
  }

  it("has the chart metadata, versioned like the package", () => {
    expect(chart.apiVersion).toBe("v2");
    expect(chart.name).toBe("task-service");
    expect(chart.version).toBe("0.1.0");
    expect(chart.appVersion).toBe("0.1.0");
    expect(chart.appVersion).toBe((JSON.parse(read("package.json")) as { version: string }).version);
  });

  it("has the expected templates", () => {
    for (const name of ["_helpers.tpl", "secret.yaml", "migrate-job.yaml", "server-deployment.yaml", "server-service.yaml", "worker-deployment.yaml", "NOTES.txt"]) {
      expect(templateFiles).toContain(name);
    }
    expect(templateFiles.some((f) => /worker.*service/.test(f)), "workers have no Service").toBe(false);
  });

  it("references only values that exist in values.yaml, and uses every value", () => {
    const referenced = new Set<string>();
    for (const [name, text] of templates) {
      for (const m of text.matchAll(/\.Values((?:\.[A-Za-z_][\w]*)+)/g)) {
        const p = m[1]!.slice(1);
        referenced.add(p);
        expect(valueAt(p).found, `${name}: .Values.${p} is in values.yaml`).toBe(true);
      }
    }
    const leaves: string[] = [];
    const walk = (node: Json, prefix: string) => {
      if (isObject(node) && Object.keys(node).length > 0) for (const [k, v] of Object.entries(node)) walk(v, prefix ? `${prefix}.${k}` : k);
      else leaves.push(prefix);
    };
    walk(values, "");
    for (const leaf of leaves) {
      expect([...referenced].some((r) => leaf === r || leaf.startsWith(`${r}.`)), `values.yaml: ${leaf} is used by a template`).toBe(true);
    }
  });

  it("has balanced template blocks and defines every template it includes", () => {
    const defined = new Set([...template("_helpers.tpl").matchAll(/\{\{-?\s*define\s+"([^"]+)"/g)].map((m) => m[1]!));
    for (const [name, text] of templates) {
      const opens = [...text.matchAll(/\{\{-?\s*(?:if|with|range|define|block)\b/g)].length;
      const ends = [...text.matchAll(/\{\{-?\s*end\s*-?\}\}/g)].length;
      expect(ends, `${name}: {{ end }} for every block`).toBe(opens);
      for (const m of text.matchAll(/\b(?:include|template)\s+"([^"]+)"/g)) expect(defined, `${name}: include "${m[1]}"`).toContain(m[1]);
    }
  });

  it("uses only real configuration variables", () => {
    const allowed = new Set([...configVariables, ...cliVariables]);
    for (const [name, text] of [...templates, ["values.yaml", read(`${chartDir}/values.yaml`)] as const]) {
      for (const variable of text.match(ENV_NAME) ?? []) expect(allowed, `${name}: ${variable}`).toContain(variable);
    }
    // Containers' env entries: configuration variables only (the CLI's TASK_ADDRESS/TASK_TOKEN are for clients).
    for (const [name, text] of templates) {
      for (const m of text.matchAll(/-\s+name:\s+([A-Z][A-Z0-9_]*)\s*$/gm)) expect(configVariables, `${name}: env ${m[1]}`).toContain(m[1]);
    }
  });

  it("runs existing task-cli commands", () => {
    expect(parseCli(templateArgs("server-deployment.yaml")).command).toBe("server");
    expect(templateArgs("server-deployment.yaml")).toEqual(["server", "--host", "0.0.0.0"]);
    const worker = templateArgs("worker-deployment.yaml");
    expect(parseCli(worker).command).toBe("serve");
    expect(template("worker-deployment.yaml")).toContain('args: ["serve", "-n", "{{ .Values.worker.concurrency }}"]');
    expect(parseCli(templateArgs("migrate-job.yaml")).command).toBe("migrate");
  });

  it("defaults to two servers and two workers of ten slots, on the config's default port", () => {
    expect(valueAt("server.replicas").value).toBe(2);
    expect(valueAt("worker.replicas").value).toBe(2);
    expect(valueAt("worker.concurrency").value).toBe(defaults.workerConcurrency);
    expect(valueAt("server.port").value).toBe(defaults.port);
    expect(valueAt("server.service.port").value).toBe(defaults.port);
    expect(valueAt("server.service.type").value).toBe("ClusterIP");
    expect(valueAt("enableShell").value).toBe(false);
  });

  it("refuses to render an API on 0.0.0.0 without tokens unless allowInsecure, and without a database", () => {
    const helpers = template("_helpers.tpl");
    const start = helpers.indexOf('define "task-service.validate"');
    expect(start).toBeGreaterThan(0);
    const next = helpers.indexOf("define ", start + 1);
    const validate = helpers.slice(start, next === -1 ? undefined : next);
    const fails = [...validate.matchAll(/\{\{-?\s*if (.*?)\s*\}\}\s*\{\{-?\s*fail "/g)].map((m) => m[1]!);
    expect(fails.some((c) => c.includes(".Values.apiTokens") && c.includes(".Values.existingSecret.name") && c.includes(".Values.server.allowInsecure"))).toBe(true);
    expect(fails.some((c) => c.includes(".Values.databaseUrl") && c.includes(".Values.existingSecret.name"))).toBe(true);
    for (const name of ["server-deployment.yaml", "worker-deployment.yaml", "secret.yaml", "migrate-job.yaml"]) {
      expect(template(name), `${name} runs the checks`).toContain('include "task-service.validate" .');
    }
    // TASK_ALLOW_INSECURE only under server.allowInsecure.
    const server = template("server-deployment.yaml");
    const at = server.indexOf("TASK_ALLOW_INSECURE");
    expect(at).toBeGreaterThan(0);
    const ifs = [...server.slice(0, at).matchAll(/\{\{-?\s*(if|else if|end)\b(.*?)\}\}/g)];
    expect(ifs.at(-1)![0]).toMatch(/if \.Values\.server\.allowInsecure/);
    expect(valueAt("server.allowInsecure").value).toBe(false);
    expect(valueAt("apiTokens").value).toEqual([]);
  });

  it("keeps secrets in a Secret: database URL, tokens and query targets", () => {
    const secret = template("secret.yaml");
    expect(secret).toMatch(/kind: Secret/);
    for (const key of ["DATABASE_URL", "TASK_API_TOKENS", "TASK_QUERY_TARGETS"]) expect(secret).toMatch(new RegExp(`^\\s+${key}:`, "m"));
    expect(secret).toMatch(/\{\{-?\s*if not \.Values\.existingSecret\.name\s*\}\}/);
    for (const name of ["server-deployment.yaml", "worker-deployment.yaml", "migrate-job.yaml", "_helpers.tpl"]) {
      expect(template(name), `${name}: no secret in a plain value`).not.toMatch(/name: (DATABASE_URL|TASK_API_TOKENS|TASK_QUERY_TARGETS)\n\s+value:/);
    }
  });

  it("migrates in a pre-install/pre-upgrade hook Job that can read the database URL on a first install", () => {
    const job = template("migrate-job.yaml");
    expect(job).toMatch(/kind: Job/);
    expect(job).toMatch(/helm\.sh\/hook: pre-install,pre-upgrade/);
    expect(job).toMatch(/restartPolicy: Never/);
    // Hooks run before the release's Secret exists: the job's own Secret is a hook with a lower weight.
    const weights = [...job.matchAll(/helm\.sh\/hook-weight: "(-?\d+)"/g)].map((m) => Number(m[1]));
    expect(weights).toHaveLength(2);
    expect(weights[0]).toBeLessThan(weights[1]!);
  });

  it("probes the server's /readyz and /healthz and lets Prometheus scrape /metrics", () => {
    const server = template("server-deployment.yaml");
    expect(server).toMatch(/readinessProbe:\s*\n\s*httpGet:\s*\n\s*path: \/readyz/);
    expect(server).toMatch(/livenessProbe:\s*\n\s*httpGet:\s*\n\s*path: \/healthz/);
    expect(server).toMatch(/containerPort: \{\{ \.Values\.server\.port \}\}/);
    expect(server).toMatch(/name: TASK_PORT\s*\n\s*value: \{\{ \.Values\.server\.port \| quote \}\}/);
    for (const name of ["server-deployment.yaml", "worker-deployment.yaml"]) {
      const text = template(name);
      expect(text, name).toContain('prometheus.io/scrape: "true"');
      expect(text, name).toContain("prometheus.io/path: /metrics");
    }
    expect(template("server-service.yaml")).toMatch(/port: \{\{ \.Values\.server\.service\.port \}\}/);
  });

  it("runs as non-root on a read-only root filesystem, with /tmp writable", () => {
    expect(valueAt("podSecurityContext.runAsNonRoot").value).toBe(true);
    expect(valueAt("podSecurityContext.runAsUser").value).toBe(1000);
    expect(valueAt("securityContext.readOnlyRootFilesystem").value).toBe(true);
    expect(valueAt("securityContext.allowPrivilegeEscalation").value).toBe(false);
    const helpers = template("_helpers.tpl");
    expect(helpers).toMatch(/- name: tmp\s*\n\s*mountPath: \/tmp/);
    expect(helpers).toMatch(/- name: tmp\s*\n\s*emptyDir: \{\}/);
    for (const name of ["server-deployment.yaml", "worker-deployment.yaml", "migrate-job.yaml"]) {
      const text = template(name);
      expect(text, name).toContain('include "task-service.volumeMounts"');
      expect(text, name).toContain('include "task-service.volumes"');
      expect(text, name).toContain("toYaml .Values.securityContext");
      expect(text, name).toContain("toYaml .Values.podSecurityContext");
    }
  });

  it("gives workers a grace period longer than TASK_SHUTDOWN_GRACE_MS, and reachable metrics", () => {
    const worker = template("worker-deployment.yaml");
    expect(worker).toMatch(/terminationGracePeriodSeconds: \{\{ \.Values\.worker\.terminationGracePeriodSeconds \}\}/);
    expect(worker).toMatch(/name: TASK_SHUTDOWN_GRACE_MS\s*\n\s*value: \{\{ \.Values\.worker\.shutdownGraceMs \| quote \}\}/);
    expect(valueAt("worker.shutdownGraceMs").value).toBe(defaults.shutdownGraceMs);
    expect(valueAt("worker.terminationGracePeriodSeconds").value).toBe(45);
    expect((valueAt("worker.terminationGracePeriodSeconds").value as number) * 1000).toBeGreaterThan(valueAt("worker.shutdownGraceMs").value as number);
    expect(worker).toMatch(/name: TASK_METRICS_PORT\s*\n\s*value: \{\{ \.Values\.worker\.metricsPort \| quote \}\}/);
    // startMetricsServer binds TASK_HOST, loopback by default.
    expect(worker).toMatch(/name: TASK_HOST\s*\n\s*value: "0\.0\.0\.0"/);
    expect(valueAt("worker.metricsPort").value).toBe(9464);
  });

  it("sets shell and run_query targets on the server and the workers alike, shell only from enableShell", () => {
    const env = template("_helpers.tpl");
    expect(env).toMatch(/name: TASK_ENABLE_SHELL\s*\n\s*value: \{\{ \.Values\.enableShell \| toString \| quote \}\}/);
    for (const name of ["server-deployment.yaml", "worker-deployment.yaml"]) expect(template(name), name).toContain('include "task-service.env" .');
    for (const [name, text] of templates) {
      if (name === "_helpers.tpl" || name === "NOTES.txt") continue;
      expect(text, `${name}: TASK_ENABLE_SHELL only through the shared env`).not.toContain("TASK_ENABLE_SHELL");
      expect(text, `${name}: no --enable-shell flag`).not.toContain("--enable-shell");
    }
  });
});

describe("README", () => {
  it("describes the deployment files, before Development", () => {
    const readme = read("README.md");
    const deployment = readme.indexOf("\n## Deployment\n");
    expect(deployment).toBeGreaterThan(0);
    expect(deployment).toBeLessThan(readme.indexOf("\n## Development\n"));
    const section = readme.slice(deployment, readme.indexOf("\n## ", deployment + 1));
    for (const text of ["docker-compose.yaml", "docker compose -f docker-compose.demo.yaml up --build", "helm install task charts/task-service", "Dockerfile"]) {
      expect(section).toContain(text);
    }
  });
});
