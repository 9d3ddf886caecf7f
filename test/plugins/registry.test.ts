import os from "node:os";
import { describe, expect, it } from "vitest";
import { InvalidArgumentError, TaskTypeDisabledError, type FieldViolation } from "../../src/errors.js";
import { noopPlugin } from "../../src/plugins/noop.js";
import { PluginRegistry } from "../../src/plugins/registry.js";
import { sendEmailPlugin } from "../../src/plugins/send-email.js";
import { shellPlugin } from "../../src/plugins/shell.js";
import type { Plugin } from "../../src/plugins/types.js";

const sendEmail = sendEmailPlugin({ outboxDir: os.tmpdir(), defaultFrom: "svc@example.com" }) as Plugin;
const enabledShell = shellPlugin({ enabled: true, killGraceMs: 500 }) as Plugin;
const disabledShell = shellPlugin({ enabled: false, killGraceMs: 500 }) as Plugin;

function registry(...plugins: Plugin[]): PluginRegistry<Plugin> {
  return new PluginRegistry<Plugin>([noopPlugin as Plugin, sendEmail, ...plugins]);
}

/** The violations of a call that must throw InvalidArgumentError. */
function violationsOf(call: () => unknown): FieldViolation[] {
  try {
    call();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError);
    return (err as InvalidArgumentError).violations;
  }
  throw new Error("expected an InvalidArgumentError, but nothing was thrown");
}

describe("PluginRegistry registration", () => {
  it("rejects a second plugin with the same name", () => {
    expect(() => registry(enabledShell, disabledShell)).toThrow(/"shell" is registered twice/);
    const plugins = registry();
    expect(() => plugins.register(noopPlugin as Plugin)).toThrow(/"noop" is registered twice/);
  });

  it("lists plugins sorted by name", () => {
    expect(registry(enabledShell).list().map((p) => p.name)).toEqual(["noop", "send_email", "shell"]);
  });
});

describe("PluginRegistry.resolve", () => {
  it("returns the plugin of a known type", () => {
    expect(registry(enabledShell).resolve("shell")).toBe(enabledShell);
  });

  it("rejects an unknown type, naming the field and the known types", () => {
    const violations = violationsOf(() => registry(enabledShell).resolve("sendmail", "tasks[2].type"));
    expect(violations).toEqual([{ field: "tasks[2].type", reason: 'unknown task type "sendmail" (known types: noop, send_email, shell)' }]);
  });

  it("rejects a disabled type with the operator's hint", () => {
    const resolve = () => registry(disabledShell).resolve("shell");
    expect(resolve).toThrow(TaskTypeDisabledError);
    expect(resolve).toThrow(/task type "shell" is disabled on this server: .*--enable-shell/);
  });
});

describe("PluginRegistry.parse", () => {
  const plugins = registry(enabledShell);

  it("returns the parameters with defaults applied", () => {
    expect(plugins.parse(noopPlugin, undefined)).toEqual({ sleep_ms: 0 });
    expect(plugins.parse(sendEmail, { to: "a@example.com", subject: "s", body: "b" })).toEqual({ to: ["a@example.com"], subject: "s", body: "b" });
  });

  it("names the offending list entry", () => {
    const violations = violationsOf(() => plugins.parse(sendEmail, { to: ["a@example.com", "not-an-address"], subject: "s", body: "b" }));
    expect(violations).toEqual([{ field: "parameters.to[1]", reason: expect.stringMatching(/email/i) }]);
  });

  it("uses the given prefix", () => {
    const violations = violationsOf(() => plugins.parse(noopPlugin, { sleep_ms: -1 }, "tasks[3].parameters"));
    expect(violations).toEqual([{ field: "tasks[3].parameters.sleep_ms", reason: expect.any(String) }]);
  });

  it("says a missing field is required", () => {
    const violations = violationsOf(() => plugins.parse(enabledShell, {}));
    expect(violations).toEqual([{ field: "parameters.command", reason: "is required" }]);
  });

  it("says a missing recipient is required, like any other missing field", () => {
    // `to` is a union (one address or a list); a missing union must read like a missing string.
    const violations = violationsOf(() => plugins.parse(sendEmail, { body: "b" }));
    expect(violations).toEqual([
      { field: "parameters.to", reason: "is required" },
      { field: "parameters.subject", reason: "is required" },
    ]);
  });

  it("reports an unknown key", () => {
    const violations = violationsOf(() => plugins.parse(noopPlugin, { sleep: 5 }));
    expect(violations).toEqual([{ field: "parameters", reason: expect.stringContaining('"sleep"') }]);
  });

  it("explains why an environment variable name is invalid", () => {
    const violations = violationsOf(() => plugins.parse(enabledShell, { command: "true", env: { "1BAD": "x" } }));
    expect(violations).toEqual([{ field: "parameters.env.1BAD", reason: "not a valid variable name" }]);
  });
});

describe("PluginRegistry.jsonSchema", () => {
  it("describes the parameters a request may send", () => {
    const schema = registry().jsonSchema(sendEmail);
    expect(schema).toMatchObject({ type: "object", required: expect.arrayContaining(["to", "subject", "body"]) });
    expect(Object.keys(schema.properties as object).sort()).toEqual(["body", "cc", "from", "html", "subject", "to"]);
    expect(schema.properties).toMatchObject({ subject: { type: "string", description: "subject line" } });
  });

  it("shows defaulted fields as optional input", () => {
    const schema = registry().jsonSchema(noopPlugin);
    expect(schema.properties).toMatchObject({ sleep_ms: { type: "integer", default: 0 } });
    expect(schema.required ?? []).not.toContain("sleep_ms");
  });
});
