/**
 * Declarative schedules in the chart: `schedules` becomes a ConfigMap holding schedules.yaml and a
 * post-install/post-upgrade hook Job that runs `task-cli schedule apply` on it against the server Service.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { parse as parseYamlText } from "yaml";
import { parseScheduleFile } from "../../src/cli/schedule-file.js";
import { type JsonObject, parseCli, read } from "../helpers/deployment.js";
import { at, byKind, containers, envOf, external, helmBinary, kindValues, named, podSpec, render } from "./helm.js";
import { validateObjects } from "./kubernetes-schema.js";

beforeAll(() => {
  helmBinary();
}, 120_000);

const schedules: JsonObject[] = [
  {
    name: "nightly-report",
    cron: "0 7 * * *",
    time_zone: "Europe/Paris",
    type: "send_email",
    parameters: { to: "ops@example.com", subject: "Report for {{scheduled_date}}", body: "attached", retries: 3, nested: { a: [1, "two"] } },
    overlap: "skip",
    catch_up: "backfill",
    backfill_limit: 5,
    timeout: "1h30m",
    priority: -5,
    max_attempts: 3,
    paused: false,
  },
  // Values YAML would read as something else unless the ConfigMap quotes them.
  { name: "heartbeat", cron: "* * * * *", type: "noop", parameters: { flag: "true", number: "007", empty: "" }, paused: true },
  { name: "hourly", cron: "@hourly", type: "noop", overlap: "cancel_previous", catch_up: "latest" },
];

const hookJob = (objects: JsonObject[]) => objects.find((o) => o.kind === "Job" && at(o, "metadata", "labels", "app.kubernetes.io/component") === "schedules");
const configMap = (objects: JsonObject[]) => objects.find((o) => o.kind === "ConfigMap" && String(at(o, "metadata", "name")).endsWith("-schedules"));

/** The task-cli call of the Job's script, as arguments. */
function applyCall(job: JsonObject): string[] {
  const script = (containers(job)[0]!.args as string[]).join("\n");
  const calls = [...script.matchAll(/node bin\/task-cli\.js ([^\n]*)/g)].map((m) => m[1]!.trim().split(/\s+/));
  expect(calls).toHaveLength(1);
  return calls[0]!;
}

describe.each([
  ["a database URL (token generated)", [external], [] as string[]],
  ["values-kind.yaml", [], kindValues],
  ["an existing Secret", [{ existingSecret: { name: "task-secrets", apiTokensKey: "tokens" } }], []],
  ["insecure", [external, { server: { allowInsecure: true } }], []],
] as const)("schedules set, with %s", (label, base, extra) => {
  let objects: JsonObject[] = [];
  beforeAll(async () => {
    const rendered = await render([...base, { schedules }], [...extra]);
    expect(rendered.result.stderr, "helm template").toBe("");
    expect(rendered.result.code).toBe(0);
    objects = rendered.objects;
  }, 60_000);

  it("renders a ConfigMap and a hook Job, valid against the Kubernetes schemas", async () => {
    expect(configMap(objects)).toBeDefined();
    expect(hookJob(objects)).toBeDefined();
    expect(await validateObjects(objects)).toEqual([]);
  });

  it("puts the given schedules in the ConfigMap's schedules.yaml, as task-cli reads it", () => {
    const text = at(configMap(objects), "data", "schedules.yaml") as string;
    expect(parseYamlText(text)).toEqual({ schedules });
    // The real parser of `schedule apply` accepts the file.
    expect(parseScheduleFile(text, "schedules.yaml").map((s) => s.name)).toEqual(["nightly-report", "heartbeat", "hourly"]);
  });

  it("runs the Job after the migrate hook, applying the mounted file against the server Service", () => {
    const job = hookJob(objects)!;
    expect(at(job, "metadata", "annotations", "helm.sh/hook")).toBe("post-install,post-upgrade");
    const weight = Number(at(job, "metadata", "annotations", "helm.sh/hook-weight"));
    const migrate = named(objects, "Job", "-migrate");
    expect(weight).toBeGreaterThan(Number(at(migrate, "metadata", "annotations", "helm.sh/hook-weight")));
    // The migrate hook is post-install too with the in-chart database, pre-install with an external one.
    expect(String(at(migrate, "metadata", "annotations", "helm.sh/hook"))).toMatch(/install/);

    const args = applyCall(job);
    expect(args).toEqual(["schedule", "apply", "-f", "/etc/task-service/schedules.yaml"]);
    expect(parseCli(args)).toMatchObject({ command: "apply", opts: { file: "/etc/task-service/schedules.yaml" } });
    const spec = podSpec(job);
    const [c] = containers(job);
    const mount = (c!.volumeMounts as JsonObject[]).find((m) => m.mountPath === "/etc/task-service")!;
    const volume = (spec.volumes as JsonObject[]).find((v) => v.name === mount.name)!;
    expect(at(volume, "configMap", "name")).toBe(at(configMap(objects), "metadata", "name"));

    const service = named(objects, "Service", "task-service");
    const env = envOf(c!);
    expect(env.get("TASK_ADDRESS")!.value).toBe(`http://${at(service, "metadata", "name")}:${at(service, "spec", "ports", 0, "port")}`);
    // The token as the helm test gets it.
    const test = objects.find((o) => at(o, "metadata", "annotations", "helm.sh/hook") === "test")!;
    expect(env.get("TASK_TOKEN")).toEqual(envOf(containers(test)[0]!).get("TASK_TOKEN"));
    if (label === "insecure") expect(env.has("TASK_TOKEN")).toBe(false);
    else expect(env.get("TASK_TOKEN")).toBeDefined();
    if (label === "an existing Secret") expect(at(env.get("TASK_TOKEN"), "valueFrom", "secretKeyRef")).toEqual({ name: "task-secrets", key: "tokens" });
  });

  it("waits for the server's /readyz before applying, and runs like every service pod", () => {
    const job = hookJob(objects)!;
    const script = (containers(job)[0]!.args as string[]).join("\n");
    expect(script.indexOf("/readyz")).toBeGreaterThan(-1);
    expect(script.indexOf("/readyz")).toBeLessThan(script.indexOf("schedule apply"));
    expect(script).toMatch(/until [^\n]*\/readyz/);
    expect(at(job, "spec", "activeDeadlineSeconds")).toBeGreaterThan(0);
    const spec = podSpec(job);
    expect(spec.restartPolicy).toBe("Never");
    expect(spec.automountServiceAccountToken).toBe(false);
    expect(at(spec, "securityContext", "runAsNonRoot")).toBe(true);
    const [c] = containers(job);
    expect(at(c, "securityContext", "readOnlyRootFilesystem")).toBe(true);
    // Its pods carry the release's selector labels: the server's NetworkPolicy admits them.
    expect(at(job, "spec", "template", "metadata", "labels", "app.kubernetes.io/instance")).toBe("task");
  });
});

describe("schedules", () => {
  it("schedulesPrune adds --prune", async () => {
    const { result, objects } = await render([external, { schedules, schedulesPrune: true }]);
    expect(result.code).toBe(0);
    const args = applyCall(hookJob(objects)!);
    expect(args).toEqual(["schedule", "apply", "-f", "/etc/task-service/schedules.yaml", "--prune"]);
    expect(parseCli(args).opts).toMatchObject({ prune: true });
  });

  it.each([
    ["by default", {}],
    ["with an empty list, even with schedulesPrune", { schedules: [], schedulesPrune: true }],
  ])("renders neither the ConfigMap nor the Job %s", async (_, values) => {
    const { result, objects } = await render([external, values]);
    expect(result.code).toBe(0);
    expect(configMap(objects)).toBeUndefined();
    expect(hookJob(objects)).toBeUndefined();
    expect(byKind(objects, "ConfigMap")).toEqual([]);
    expect(byKind(objects, "Job").map((j) => at(j, "metadata", "name"))).toEqual(["task-task-service-migrate"]);
  });
});

describe("the documented example values", () => {
  /** The first yaml code block after a marker in a file. */
  const exampleAfter = (file: string, marker: string): JsonObject => {
    const text = read(file);
    const start = text.indexOf(marker);
    expect(start, `${file}: ${marker}`).toBeGreaterThan(-1);
    const block = /```yaml\n([\s\S]*?)```/.exec(text.slice(start));
    expect(block, `${file}: a yaml block after ${marker}`).not.toBeNull();
    return parseYamlText(block![1]!) as JsonObject;
  };

  it.each([
    ["README.md", "**Schedules from the chart.**"],
    ["charts/task-service/README.md", "## Schedules"],
  ])("%s: render, and the ConfigMap holds them", async (file, marker) => {
    const example = exampleAfter(file, marker);
    expect((example.schedules as JsonObject[]).length).toBeGreaterThan(0);
    const { result, objects } = await render([external, example]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(await validateObjects(objects)).toEqual([]);
    const text = at(configMap(objects), "data", "schedules.yaml") as string;
    expect(parseYamlText(text)).toEqual({ schedules: example.schedules });
    expect(parseScheduleFile(text, "schedules.yaml")).toHaveLength((example.schedules as JsonObject[]).length);
  });
});
