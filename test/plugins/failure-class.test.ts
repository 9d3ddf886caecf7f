import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PermanentTaskError } from "../../src/errors.js";
import { createLogger } from "../../src/logger.js";
import { runQueryPlugin, type RunQueryPlugin } from "../../src/plugins/run-query.js";
import { sendEmailPlugin } from "../../src/plugins/send-email.js";
import { PLAYGROUND_DATABASE, urlForDatabase } from "../helpers/database.js";
import { pluginContext } from "../helpers/plugin-context.js";

let server: SMTPServer;
let smtpUrl: string;
let query: RunQueryPlugin;
let admin: pg.Client;
const suffix = randomBytes(4).toString("hex");
/** A table the unprivileged role the plugin connects as may not read. */
const SECRET = `secret_${suffix}`;
const ROLE = `unprivileged_${suffix}`;

beforeAll(async () => {
  server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    onRcptTo(address, _session, callback) {
      if (address.address.startsWith("unknown@")) return callback(Object.assign(new Error("no such mailbox"), { responseCode: 550 }));
      if (address.address.startsWith("greylisted@")) return callback(Object.assign(new Error("try again later"), { responseCode: 451 }));
      callback();
    },
    onData(stream, _session, callback) {
      stream.resume();
      stream.on("end", () => callback());
    },
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  smtpUrl = `smtp://127.0.0.1:${(server.server.address() as AddressInfo).port}`;
  admin = new pg.Client({ connectionString: urlForDatabase(PLAYGROUND_DATABASE) });
  await admin.connect();
  await admin.query(`create role ${ROLE} login password 'pw'; create table ${SECRET} (a int); revoke all on ${SECRET} from public`);
  const asRole = new URL(urlForDatabase(PLAYGROUND_DATABASE));
  asRole.username = ROLE;
  asRole.password = "pw";
  query = runQueryPlugin({
    targets: { playground: asRole.toString() },
    writableTargets: [],
    statementTimeoutMs: 2_000,
    maxResultBytes: 1024 * 1024,
    maxReadBytes: 64 * 1024 * 1024,
    poolSize: 2,
    logger: createLogger("silent"),
  });
});

afterAll(async () => {
  await query?.close();
  await admin.query(`drop table if exists ${SECRET}; drop role if exists ${ROLE}`);
  await admin.end();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** Runs a query and returns what it threw. */
async function failureOf(sql: string): Promise<unknown> {
  return query.run(query.parameters.parse({ sql }), pluginContext()).then(
    () => expect.unreachable(`${sql} succeeded`),
    (err: unknown) => err,
  );
}

describe("run_query: failures a retry cannot fix are permanent", () => {
  it.each([
    ["a syntax error", "selec 1", /syntax error.*SQLSTATE 42601/],
    ["an undefined table", "select * from no_such_table", /does not exist.*SQLSTATE 42P01/],
    ["a write in a read-only transaction", "create table t_never (a int)", /read-only transaction.*SQLSTATE 25006/],
    ["a missing privilege", `select * from ${SECRET}`, /permission denied.*SQLSTATE 42501/],
    ["bad data", "select 1/0", /division by zero.*SQLSTATE 22012/],
  ])("%s", async (_what, sql, message) => {
    const err = await failureOf(sql);
    expect(err).toBeInstanceOf(PermanentTaskError);
    expect((err as Error).message).toMatch(message);
  });

  it.each([
    ["a serialization failure", "40001"],
    ["a deadlock", "40P01"],
    ["a connection failure", "08006"],
  ])("%s stays retryable", async (_what, sqlstate) => {
    const err = await failureOf(`do $$ begin raise exception 'transient' using errcode = '${sqlstate}'; end $$`);
    expect((err as { code?: string }).code).toBe(sqlstate);
    expect(err).not.toBeInstanceOf(PermanentTaskError);
  });

  it("a statement timeout stays retryable", async () => {
    const err = await failureOf("select pg_sleep(10)");
    expect((err as Error).message).toMatch(/statement timeout/);
    expect(err).not.toBeInstanceOf(PermanentTaskError);
  });
});

describe("send_email: 5xx replies are permanent, 4xx replies retryable", () => {
  const send = (to: string) => {
    const plugin = sendEmailPlugin({ smtpUrl, outboxDir: "/nonexistent", defaultFrom: "svc@example.com" });
    return plugin.run(plugin.parameters.parse({ to, subject: "Hi", body: "Hello" }), pluginContext()).then(
      () => expect.unreachable(`sending to ${to} succeeded`),
      (err: unknown) => err,
    );
  };

  it("a rejected mailbox (550) fails permanently", async () => {
    const err = await send("unknown@example.com");
    expect(err).toBeInstanceOf(PermanentTaskError);
    expect((err as Error).message).toMatch(/550|no such mailbox/);
  });

  it("a temporary rejection (451) is retried", async () => {
    const err = await send("greylisted@example.com");
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(PermanentTaskError);
    expect((err as Error).message).toMatch(/451|try again/);
  });

  it("an unreachable server is retried", async () => {
    const plugin = sendEmailPlugin({ smtpUrl: "smtp://127.0.0.1:1", outboxDir: "/nonexistent", defaultFrom: "svc@example.com" });
    const err = await plugin.run(plugin.parameters.parse({ to: "a@example.com", subject: "Hi", body: "x" }), pluginContext()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(PermanentTaskError);
  });
});

describe("run_query: a statement that kills its own connection", () => {
  it("fails the attempt (retryable) without crashing the worker process", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [path.resolve("node_modules/tsx/dist/cli.mjs"), "test/fixtures/run-query-self-terminate.ts", urlForDatabase(PLAYGROUND_DATABASE)],
      { timeout: 60_000 },
    );
    const report = JSON.parse(stdout);
    expect(report.outcome).toMatch(/^failed: .*terminating connection/);
    expect(report.again).toEqual([{ one: 1 }]);
  }, 90_000);
});
