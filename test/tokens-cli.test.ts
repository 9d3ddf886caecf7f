import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "./helpers/database.js";
import { runCli } from "./helpers/cli.js";
import { spawnCli, type CliProcess } from "./helpers/process.js";
import { waitFor } from "./helpers/wait.js";

const ADMIN = "admin-secret-for-the-cli-test";
let database: TestDatabase;
/** Two `task-cli server` processes over one database: replicas behind a load balancer. */
const servers: { proc: CliProcess; url: string }[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  for (let i = 0; i < 2; i++) {
    const proc = spawnCli(["server", "--port", "0"], { DATABASE_URL: database.url, TASK_API_TOKENS: `boss:admin:${ADMIN}`, LOG_LEVEL: "info" });
    const url = await waitFor(() => /"url":"(http:[^"]+)".*"msg":"API listening"/.exec(proc.output())?.[1], "the server to log its address", 60_000);
    servers.push({ proc, url });
  }
}, 120_000);

afterAll(async () => {
  for (const { proc } of servers) {
    proc.child.kill("SIGTERM");
    await proc.exited;
  }
  await database?.drop();
});

const cli = (server: number, token: string | undefined, ...args: string[]) =>
  runCli(["--address", servers[server]!.url, ...(token === undefined ? [] : ["--token", token]), ...args]);
const storedTokens = async () => (await sql<{ n: number }>`select count(*)::int as n from api_tokens`.execute(database.db.kysely)).rows[0]!.n;

describe("task-cli token against server processes", () => {
  it("creates a token and prints it once, lists tokens without secrets, and revokes on every replica within a second", async () => {
    const created = await cli(0, ADMIN, "token", "create", "--name", "ci", "--role", "operator", "--expires", "90d", "--queues", "reports");
    expect(created.code, created.stderr).toBe(0);
    const secret = /^(tsk_\S+)$/m.exec(created.stdout)?.[1];
    expect(secret, created.stdout).toBeDefined();
    expect(created.stdout).toMatch(/Role\s+operator/);
    expect(created.stdout).toMatch(/Queues\s+reports/);

    // The other replica knows it at once.
    const who = await cli(1, secret, "whoami");
    expect(who.code, who.stderr).toBe(0);
    expect(who.stdout).toMatch(/Token\s+ci/);
    expect(who.stdout).toMatch(/Shell tasks\s+not allowed \(needs admin\)/);

    const listed = await cli(1, ADMIN, "token", "list");
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/boss\s+admin\s+all\s+all\s+TASK_API_TOKENS/);
    expect(listed.stdout).toMatch(/ci\s+operator\s+reports\s+all\s+created/);
    const json = await cli(1, ADMIN, "-o", "json", "token", "list");
    expect(JSON.parse(json.stdout).tokens.map((t: { name: string }) => t.name)).toEqual(["boss", "ci"]);
    for (const out of [listed.stdout, json.stdout]) {
      expect(out).not.toContain(secret!);
      expect(out).not.toContain(ADMIN);
    }

    // Not an admin: refused, naming the role it needs.
    const refused = await cli(1, secret, "token", "list");
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/requires role admin; token ci has operator/);

    const revoked = await cli(0, ADMIN, "token", "revoke", "--name", "ci");
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toMatch(/State\s+revoked/);
    const at = Date.now();
    await waitFor(async () => (await cli(1, secret, "whoami")).stderr.match(/invalid bearer token/), "the other replica to refuse the token", 5_000);
    expect(Date.now() - at).toBeLessThan(1_000);
    expect((await cli(0, ADMIN, "token", "list")).stdout).not.toMatch(/^ci\s/m);
    expect((await cli(0, ADMIN, "token", "list", "--all")).stdout).toMatch(/ci\s+operator.*revoked/);
  }, 60_000);

  it("refuses bad input and stores nothing", async () => {
    const before = await storedTokens();
    const cases: Array<[string[], RegExp]> = [
      [["--name", "x", "--role", "superuser"], /--role: "superuser" is not a role/],
      [["--name", "x", "--role", "reader", "--expires", "soon"], /--expires: "soon" is not a duration/],
      [["--name", "Bad Name", "--role", "reader"], /not a token name/],
      [["--name", "boss", "--role", "reader"], /a token named "boss" already exists/],
      [["--name", "x", "--role", "reader", "--queues", "Not/A/Queue"], /queues\[0\]/],
    ];
    for (const [args, message] of cases) {
      const res = await cli(0, ADMIN, "token", "create", ...args);
      expect(res.code, args.join(" ")).not.toBe(0);
      expect(res.stderr).toMatch(message);
    }
    expect(await storedTokens()).toBe(before);
    const noToken = await cli(0, undefined, "token", "list");
    expect(noToken.code).not.toBe(0);
    expect(noToken.stderr).toMatch(/missing bearer token/);
  }, 60_000);

  it("takes --shell-role operator or admin, nothing else", async () => {
    const res = await runCli(["server", "--port", "0", "--shell-role", "reader"]);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/--shell-role: "reader" must be operator or admin/);
  });
});
