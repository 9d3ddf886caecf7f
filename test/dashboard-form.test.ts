import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TaskType } from "../src/gen/task/v1/task_pb.js";
import { fieldsFromSchema, fromParameters, inputForViolation, toParameters, type FieldSpec } from "../ui/src/forms/parameter-fields.js";
import { decodeBadRequest, fieldViolations, parseViolationMessage } from "../ui/src/services/field-errors.js";
import { startTestApi, type TestApi } from "./helpers/api.js";

// The dashboard's create form, checked against the real server: the inputs it generates from
// ListTaskTypes' schemas produce parameters the server accepts, and it reads the server's errors.

let api: TestApi;
let types: Map<string, TaskType>;
beforeAll(async () => {
  api = await startTestApi();
  types = new Map((await api.client.listTaskTypes({})).types.map((t) => [t.name, t]));
});
afterAll(async () => api?.close());

const fieldsOf = (type: string) => fieldsFromSchema(types.get(type)!.parameterSchema);
const byName = (fields: FieldSpec[]) => Object.fromEntries(fields.map((f) => [f.name, f]));

describe("inputs generated from the parameter schemas", () => {
  it("picks an input for every parameter of every built-in type", () => {
    const shell = byName(fieldsOf("shell"));
    expect(shell.command).toMatchObject({ kind: "multiline", required: true });
    expect(shell.env).toMatchObject({ kind: "map", required: false });
    expect(shell.cwd).toMatchObject({ kind: "text", required: false });
    const email = byName(fieldsOf("send_email"));
    expect(email.to).toMatchObject({ kind: "list", singleAsString: true, required: true });
    expect(email.subject).toMatchObject({ kind: "text", required: true });
    expect(email.body).toMatchObject({ kind: "multiline", required: true });
    const query = byName(fieldsOf("run_query"));
    expect(query.read_only).toMatchObject({ kind: "boolean", defaultValue: true });
    expect(query.max_rows).toMatchObject({ kind: "integer", defaultValue: 100 });
    expect(query.params).toMatchObject({ kind: "json" });
    expect(byName(fieldsOf("noop")).sleep_ms).toMatchObject({ kind: "integer", defaultValue: 0 });
  });

  it("turns filled-in inputs into parameters the server accepts", async () => {
    const cases: [string, Record<string, string>][] = [
      ["shell", { command: "echo hi", env: "GREETING=hello\nEMPTY=", cwd: "" }],
      ["send_email", { to: "a@example.com, b@example.com", subject: "Hi", body: "Text" }],
      ["run_query", { sql: "select $1::int as n", params: "[1]", read_only: "true", max_rows: "5" }],
      ["noop", { sleep_ms: "1" }],
    ];
    for (const [type, values] of cases) {
      const { parameters, errors } = toParameters(fieldsOf(type), values);
      expect(errors, type).toEqual({});
      const { task } = await api.client.createTask({ name: `form ${type}`, type, parameters, runAt: { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600), nanos: 0 } });
      expect(task?.parameters, type).toMatchObject(parameters);
      // Cloning shows the same values again.
      expect(toParameters(fieldsOf(type), fromParameters(fieldsOf(type), task!.parameters)).parameters, type).toMatchObject(parameters);
    }
    expect(toParameters(fieldsOf("send_email"), { to: "one@example.com" }).parameters.to).toBe("one@example.com");
  });

  it("catches what it can read itself before sending: numbers, JSON, NAME=value lines", () => {
    expect(toParameters(fieldsOf("noop"), { sleep_ms: "soon" }).errors).toEqual({ sleep_ms: "must be a number" });
    expect(toParameters(fieldsOf("noop"), { sleep_ms: "1.5" }).errors).toEqual({ sleep_ms: "must be a whole number" });
    expect(toParameters(fieldsOf("run_query"), { sql: "select 1", params: "[1," }).errors).toEqual({ params: "must be valid JSON" });
    expect(toParameters(fieldsOf("shell"), { command: "env", env: "JUSTANAME" }).errors).toEqual({ env: "line 1: write NAME=value" });
    // Empty inputs are left out, so the server applies its defaults.
    expect(toParameters(fieldsOf("run_query"), { sql: "select 1", read_only: "", max_rows: " " }).parameters).toEqual({ sql: "select 1" });
  });
});

describe("the server's field errors", () => {
  async function refusal(request: Parameters<TestApi["client"]["createTask"]>[0]): Promise<ConnectError> {
    const err = await api.client.createTask(request).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    return err as ConnectError;
  }

  it("are read from a real InvalidArgument and land on the inputs that caused them", async () => {
    const cheap = fieldViolations(await refusal({ name: " ", type: "send_email", priority: 5000 }));
    expect(cheap.map((v) => v.field).sort()).toEqual(["name", "priority"]);
    const params = fieldViolations(await refusal({ name: "mail", type: "send_email", parameters: { to: ["ok@example.com", "nope"], subject: "" } }));
    expect(params.map((v) => inputForViolation(v.field)).sort()).toEqual(["body", "subject", "to"]);
    expect(params.find((v) => v.field === "parameters.body")?.reason).toBe("is required");
  });

  it("parse the message form, and google.rpc.BadRequest details when present", () => {
    expect(parseViolationMessage("name: is required; parameters.to[1]: Invalid email address")).toEqual([
      { field: "name", reason: "is required" },
      { field: "parameters.to[1]", reason: "Invalid email address" },
    ]);
    expect(parseViolationMessage("cannot cancel task 4: it is SUCCEEDED")).toEqual([]);
    const w = new BinaryWriter();
    for (const [field, description] of [["name", "is required"], ["parameters.command", "Too small"]]) {
      w.tag(1, 2).fork().tag(1, 2).string(field!).tag(2, 2).string(description!).join();
    }
    const bytes = w.finish();
    expect(decodeBadRequest(bytes)).toEqual([
      { field: "name", reason: "is required" },
      { field: "parameters.command", reason: "Too small" },
    ]);
    // As connect-web stores a detail it received.
    const withDetails = new ConnectError("bad", Code.InvalidArgument);
    withDetails.details.push({ type: "google.rpc.BadRequest", value: bytes });
    expect(fieldViolations(withDetails).map((v) => v.field)).toEqual(["name", "parameters.command"]);
    expect(decodeBadRequest(new Uint8Array([0x0a, 0x05, 0x01]))).toEqual([]);
  });
});
