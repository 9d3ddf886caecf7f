import { Code, ConnectError } from "@connectrpc/connect";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { METHOD_RULES, roleAllows } from "../src/api/roles.js";
import { API_SERVICES } from "../src/api/routes.js";
import { startApiServer, type ApiServer } from "../src/api/server.js";
import { loadConfig } from "../src/config.js";
import { TaskControlService, BulkAction } from "../src/gen/task/v1/control_pb.js";
import { QueueService, WorkerService } from "../src/gen/task/v1/queue_pb.js";
import { ScheduleService } from "../src/gen/task/v1/schedule_pb.js";
import { TaskService } from "../src/gen/task/v1/task_pb.js";
import { Role, TokenService } from "../src/gen/task/v1/token_pb.js";
import { AuditService } from "../src/gen/task/v1/audit_pb.js";
import { ServerReflection as ReflectionV1 } from "../src/gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1alpha } from "../src/gen/grpc/reflection/v1alpha/reflection_pb.js";
import { Metrics } from "../src/metrics.js";
import { builtinPlugins } from "../src/plugins/builtin.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { expectConnectError, taskRequest } from "./helpers/factory.js";
import { bearerToken } from "../src/sdk/client.js";
import { clientsAs, CONFIGURED, drain, NAMES, protocols, snapshot, TOKENS, type Clients, type RoleName } from "./helpers/tokens.js";
import { waitFor } from "./helpers/wait.js";


let api: TestApi;
let metrics: Metrics;
beforeAll(async () => {
  metrics = new Metrics();
  api = await startTestApi({ config: { apiTokens: CONFIGURED }, interceptors: [bearerToken(TOKENS.admin)], metrics });
});
afterAll(async () => api?.close());

const as = (token: string | undefined, protocol: keyof typeof protocols = "connect", url = api.server.url) => clientsAs(url, token, protocol);

let unique = 0;
/** One call per RPC of the API, keyed as in METHOD_RULES. Allowed calls may still fail (NotFound, InvalidArgument): only the role is checked. */
const calls: Record<string, (c: Clients) => Promise<unknown>> = {
  "task.v1.TaskService/CreateTask": (c) => c.task.createTask(taskRequest()),
  "task.v1.TaskService/CreateTasks": (c) => c.task.createTasks({ tasks: [taskRequest()] }),
  "task.v1.TaskService/GetTask": (c) => c.task.getTask({ id: 999_999n }),
  "task.v1.TaskService/ListTasks": (c) => c.task.listTasks({}),
  "task.v1.TaskService/GetTaskHistory": (c) => c.task.getTaskHistory({ id: 999_999n }),
  "task.v1.TaskService/GetTaskStatusCounts": (c) => c.task.getTaskStatusCounts({}),
  "task.v1.TaskService/CancelTask": (c) => c.task.cancelTask({ id: 999_999n }),
  "task.v1.TaskService/RetryTask": (c) => c.task.retryTask({ id: 999_999n }),
  "task.v1.TaskService/ListTaskTypes": (c) => c.task.listTaskTypes({}),
  "task.v1.TaskService/GetTaskLogs": (c) => c.task.getTaskLogs({ id: 999_999n }),
  "task.v1.TaskService/WatchTask": (c) => {
    const ac = new AbortController();
    return drain(c.task.watchTask({ id: 999_999n }, { signal: ac.signal }), ac);
  },
  "task.v1.TaskService/WatchTasks": (c) => {
    const ac = new AbortController();
    return drain(c.task.watchTasks({}, { signal: ac.signal }), ac);
  },
  "task.v1.TaskService/GetTaskThroughput": (c) => c.task.getTaskThroughput({}),
  "task.v1.TaskService/ListTaskFiles": (c) => c.task.listTaskFiles({ id: 999_999n }),
  "task.v1.TaskControlService/PauseTask": (c) => c.control.pauseTask({ id: 999_999n }),
  "task.v1.TaskControlService/ResumeTask": (c) => c.control.resumeTask({ id: 999_999n }),
  "task.v1.TaskControlService/DeleteTask": (c) => c.control.deleteTask({ id: 999_999n }),
  "task.v1.TaskControlService/BulkTasks": (c) => c.control.bulkTasks({ action: BulkAction.CANCEL, selection: { ids: [999_999n] } }),
  "task.v1.QueueService/ListQueues": (c) => c.queue.listQueues({}),
  "task.v1.QueueService/GetQueue": (c) => c.queue.getQueue({ name: "roles-q" }),
  "task.v1.QueueService/UpdateQueue": (c) => c.queue.updateQueue({ name: "roles-q", settings: { concurrency: 3 }, updateMask: { paths: ["concurrency"] } }),
  "task.v1.QueueService/PauseQueue": (c) => c.queue.pauseQueue({ name: "roles-q" }),
  "task.v1.QueueService/ResumeQueue": (c) => c.queue.resumeQueue({ name: "roles-q" }),
  "task.v1.WorkerService/ListWorkers": (c) => c.worker.listWorkers({}),
  "task.v1.ScheduleService/CreateSchedule": (c) =>
    c.schedule.createSchedule({ spec: { name: `roles-${++unique}`, cron: "0 0 1 1 *", task: { type: "noop", parameters: {} } } }),
  "task.v1.ScheduleService/GetSchedule": (c) => c.schedule.getSchedule({ name: "none" }),
  "task.v1.ScheduleService/ListSchedules": (c) => c.schedule.listSchedules({}),
  "task.v1.ScheduleService/UpdateSchedule": (c) => c.schedule.updateSchedule({ name: "none" }),
  "task.v1.ScheduleService/PauseSchedule": (c) => c.schedule.pauseSchedule({ name: "none" }),
  "task.v1.ScheduleService/ResumeSchedule": (c) => c.schedule.resumeSchedule({ name: "none" }),
  "task.v1.ScheduleService/DeleteSchedule": (c) => c.schedule.deleteSchedule({ name: "none" }),
  "task.v1.ScheduleService/TriggerSchedule": (c) => c.schedule.triggerSchedule({ name: "none" }),
  "task.v1.TokenService/CreateToken": (c) => c.token.createToken({ name: `made-${++unique}`, role: Role.READER }),
  "task.v1.TokenService/ListTokens": (c) => c.token.listTokens({}),
  "task.v1.TokenService/RevokeToken": (c) => c.token.revokeToken({ name: "none" }),
  "task.v1.TokenService/WhoAmI": (c) => c.token.whoAmI({}),
  "task.v1.AuditService/ListAuditEvents": (c) => c.audit.listAuditEvents({}),
  "task.v1.AgentService/Register": (c) => c.agent.register({ name: "roles-agent", slots: 1, types: ["noop"] }),
  "task.v1.AgentService/Assignments": (c) => {
    const ac = new AbortController();
    return drain(c.agent.assignments({ agentId: "agent:boss:none" }, { signal: ac.signal }), ac);
  },
  "task.v1.AgentService/Heartbeat": (c) => c.agent.heartbeat({ agentId: "agent:boss:none" }),
  "task.v1.AgentService/ReportOutcomes": (c) => c.agent.reportOutcomes({ agentId: "agent:boss:none" }),
  "task.v1.AgentService/AppendLogs": (c) => c.agent.appendLogs({ agentId: "agent:boss:none" }),
  "task.v1.RateLimitService/SetRateLimit": (c) => c.limit.setRateLimit({ limit: { name: `roles-${++unique}`, rate: 1, period: { seconds: 60n }, burst: 1, queue: `roles-q${unique}` } }),
  "task.v1.RateLimitService/ListRateLimits": (c) => c.limit.listRateLimits({}),
  "task.v1.RateLimitService/DeleteRateLimit": (c) => c.limit.deleteRateLimit({ name: "roles-none" }),
};

describe("the role table", () => {
  it("has a rule for every method the server routes, and none for methods it does not", () => {
    const routed = [...API_SERVICES, ReflectionV1, ReflectionV1alpha].flatMap((s) => s.methods.map((m) => `${s.typeName}/${m.name}`));
    expect(Object.keys(METHOD_RULES).sort()).toEqual(routed.sort());
  });

  it("is exercised by this file for every API method", () => {
    const api = API_SERVICES.flatMap((s) => s.methods.map((m) => `${s.typeName}/${m.name}`));
    expect(Object.keys(calls).sort()).toEqual(api.sort());
  });
});

describe.each(Object.keys(protocols) as (keyof typeof protocols)[])("each role over %s", (protocol) => {
  it.each(Object.keys(NAMES) as RoleName[])("%s: allowed calls pass, refused ones are PermissionDenied naming the role and change nothing", async (role) => {
    const c = as(TOKENS[role], protocol);
    for (const [method, call] of Object.entries(calls)) {
      const needed = METHOD_RULES[method]!.role;
      if (roleAllows(role, needed)) {
        const code = await call(c).then(
          () => undefined,
          (err: unknown) => ConnectError.from(err).code,
        );
        expect([Code.PermissionDenied, Code.Unauthenticated], `${method} as ${role}`).not.toContain(code);
      } else {
        const before = await snapshot(api.database.db.kysely);
        await expectConnectError(call(c), Code.PermissionDenied, `requires role ${needed}; token ${NAMES[role]} has ${role}`);
        expect(await snapshot(api.database.db.kysely), `${method} as ${role} changed something`).toEqual(before);
      }
    }
  }, 60_000);
});

describe("TASK_API_TOKENS", () => {
  it("takes a plain entry as an admin token named by its position, and named entries with their role", async () => {
    await expect(as(TOKENS.legacy).token.whoAmI({})).resolves.toMatchObject({ name: "config-1", role: Role.ADMIN, local: false, shellAllowed: true });
    await expect(as(TOKENS.reader, "grpc").token.whoAmI({})).resolves.toMatchObject({ name: "ro", role: Role.READER, shellAllowed: false });
    const who = await as(TOKENS.operator).token.whoAmI({});
    expect(who).toMatchObject({ name: "op", role: Role.OPERATOR, shellAllowed: false, shellRole: Role.ADMIN });
    expect(who.allowedMethods).toContain("task.v1.TaskService/CancelTask");
    expect(who.allowedMethods).not.toContain("task.v1.TaskControlService/DeleteTask");
    // A plain token may do what every token could before roles existed.
    await expect(as(TOKENS.legacy).control.bulkTasks({ action: BulkAction.DELETE, selection: { ids: [999_999n] } })).resolves.toMatchObject({ matched: 0n });
  });

  it("refuses a misspelt role instead of making it a plain admin token", () => {
    expect(() => loadConfig({ apiTokens: ["ci:opertor:secret"] }, {})).toThrow(/TASK_API_TOKENS: entry 1 \(ci\): unknown role "opertor"/);
    expect(() => loadConfig({ apiTokens: ["a:reader:x", "a:admin:y"] }, {})).toThrow(/the name a is used twice/);
    expect(loadConfig({ apiTokens: "ci:reader:x:y,plain" }, {}).apiTokens).toEqual(["ci:reader:x:y", "plain"]);
  });

  it("lists configured tokens without their secrets", async () => {
    const { tokens } = await api.client.listTasks({}).then(() => as(TOKENS.admin).token.listTokens({}));
    const configured = tokens.filter((t) => t.source === "config");
    expect(configured.map((t) => [t.name, t.role])).toEqual([["config-1", Role.ADMIN], ["ro", Role.READER], ["op", Role.OPERATOR], ["boss", Role.ADMIN]]);
    expect(JSON.stringify(tokens.map((t) => ({ ...t, createdAt: undefined })), (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))).not.toMatch(/secret/);
  });

  it("answers Unauthenticated without a valid token, before looking at the request", async () => {
    await expectConnectError(as(undefined).task.getTask({ id: 0n }), Code.Unauthenticated, "missing bearer token");
    await expectConnectError(as("reader-secret").task.getTask({ id: 0n }), Code.Unauthenticated, "invalid bearer token");
    await expectConnectError(as("ro:reader:reader-secret-0123456789").task.getTask({ id: 0n }), Code.Unauthenticated);
  });
});

describe("stored tokens", () => {
  it("rejects bad input with InvalidArgument or AlreadyExists and stores nothing", async () => {
    const admin = as(TOKENS.admin);
    const before = await snapshot(api.database.db.kysely);
    const cases: Array<[Parameters<Clients["token"]["createToken"]>[0], Code, string]> = [
      [{ name: "x1", role: Role.UNSPECIFIED }, Code.InvalidArgument, "role"],
      [{ name: "x2", role: 42 as Role }, Code.InvalidArgument, "role"],
      [{ name: "", role: Role.READER }, Code.InvalidArgument, "name: is required"],
      [{ name: "Bad Name", role: Role.READER }, Code.InvalidArgument, "not a token name"],
      [{ name: "x3", role: Role.READER, expiresIn: { seconds: -5n, nanos: 0 } }, Code.InvalidArgument, "expires_in"],
      [{ name: "x4", role: Role.READER, expiresIn: { seconds: 0n, nanos: 0 } }, Code.InvalidArgument, "expires_in"],
      [{ name: "x5", role: Role.READER, expiresIn: { seconds: 20n * 365n * 86400n, nanos: 0 } }, Code.InvalidArgument, "expires_in"],
      [{ name: "x6", role: Role.READER, queues: ["Not A Queue"] }, Code.InvalidArgument, "queues[0]"],
      [{ name: "ro", role: Role.READER }, Code.AlreadyExists, 'a token named "ro" already exists'],
    ];
    for (const [req, code, message] of cases) await expectConnectError(admin.token.createToken(req), code, message);
    expect(await snapshot(api.database.db.kysely)).toEqual(before);

    await admin.token.createToken({ name: "twice", role: Role.READER });
    const after = await snapshot(api.database.db.kysely);
    await expectConnectError(admin.token.createToken({ name: "twice", role: Role.ADMIN }), Code.AlreadyExists, "twice");
    expect(await snapshot(api.database.db.kysely)).toEqual(after);
    await expectConnectError(admin.token.revokeToken({ name: "ro" }), Code.FailedPrecondition, "TASK_API_TOKENS");
    await expectConnectError(admin.token.revokeToken({ name: "no-such" }), Code.NotFound, "no-such");
  });

  it("stores only a SHA-256 hash, works at once, and refuses an expired token", async () => {
    const admin = as(TOKENS.admin, "grpc");
    const { secret, token } = await admin.token.createToken({ name: "short", role: Role.OPERATOR, expiresIn: { seconds: 1n, nanos: 0 } });
    expect(secret).toMatch(/^tsk_[A-Za-z0-9_-]{43}$/);
    expect(token).toMatchObject({ name: "short", role: Role.OPERATOR, source: "database" });
    const { rows } = await sql<{ h: string }>`select encode(token_hash, 'hex') as h from api_tokens where name = 'short'`.execute(api.database.db.kysely);
    expect(rows[0]!.h).toBe((await import("node:crypto")).createHash("sha256").update(secret).digest("hex"));
    await expect(as(secret, "grpc").task.createTask(taskRequest())).resolves.toMatchObject({ created: true });
    await waitFor(async () => (await as(secret).task.listTasks({}).then(() => false, (err: unknown) => ConnectError.from(err).code === Code.Unauthenticated)), "the token to expire", 5_000);
    const listed = await admin.token.listTokens({});
    expect(listed.tokens.map((t) => t.name)).not.toContain("short");
    expect((await admin.token.listTokens({ includeInactive: true })).tokens.find((t) => t.name === "short")?.lastUsedAt).toBeDefined();
  });

  it("is refused on a second server replica within a second of its revocation", async () => {
    const admin = as(TOKENS.admin);
    const { secret } = await admin.token.createToken({ name: "replicated", role: Role.READER });
    const config = loadConfig({ host: "127.0.0.1", port: 0, apiTokens: CONFIGURED }, {});
    const plugins = builtinPlugins(config, api.database.logger);
    const replica: ApiServer = await startApiServer({ db: api.database.db, registry: plugins.registry, config, logger: api.database.logger });
    try {
      const onReplica = as(secret, "grpc", replica.url);
      // Used on both replicas, so each has it cached.
      await onReplica.task.listTasks({});
      await as(secret).task.listTasks({});
      await admin.token.revokeToken({ name: "replicated" });
      const revokedAt = Date.now();
      // Each replica may trust its cached lookup for up to TOKEN_CACHE_MS after the revocation.
      const refused = (c: Clients) => c.task.listTasks({}).then(() => false, (err: unknown) => ConnectError.from(err).code === Code.Unauthenticated);
      await waitFor(() => refused(onReplica), "the replica to refuse the revoked token", 5_000);
      await waitFor(() => refused(as(secret)), "the first server to refuse the revoked token", 5_000);
      expect(Date.now() - revokedAt).toBeLessThan(1_000);
      await expectConnectError(as(secret).task.listTasks({}), Code.Unauthenticated, "invalid bearer token");
    } finally {
      await replica.close();
      await plugins.close();
    }
  });
});

describe("the log download and /metrics", () => {
  it("need a token that resolves, and answer a reader", async () => {
    const { task } = await api.client.createTask(taskRequest());
    expect((await fetch(`${api.server.url}/tasks/${task!.id}/logs`)).status).toBe(401);
    expect((await fetch(`${api.server.url}/metrics`)).status).toBe(401);
    const asReader = { headers: { authorization: `Bearer ${TOKENS.reader}` } };
    await expectConnectError(as(TOKENS.reader).token.listTokens({}), Code.PermissionDenied);
    expect((await fetch(`${api.server.url}/tasks/${task!.id}/logs`, asReader)).status).toBe(200);
    const scraped = await fetch(`${api.server.url}/metrics`, asReader);
    expect(scraped.status).toBe(200);
    expect(await scraped.text()).toMatch(/task_service_rpc_requests_total\{method="ListTokens",code="PermissionDenied"\} [1-9]/);
  });
});

describe("shell tasks", () => {
  const shell = () => taskRequest({ type: "shell", parameters: { command: "true" } });

  it("need the shell role (admin by default) to create or retry", async () => {
    const before = await snapshot(api.database.db.kysely);
    await expectConnectError(as(TOKENS.operator).task.createTask(shell()), Code.PermissionDenied, "a shell task requires role admin; token op has operator");
    await expectConnectError(as(TOKENS.operator, "grpc").task.createTasks({ tasks: [taskRequest(), shell()] }), Code.PermissionDenied, "requires role admin");
    expect(await snapshot(api.database.db.kysely)).toEqual(before);
    const { task } = await as(TOKENS.admin).task.createTask(shell());
    await as(TOKENS.admin).task.cancelTask({ id: task!.id });
    await expectConnectError(as(TOKENS.operator).task.retryTask({ id: task!.id }), Code.PermissionDenied, "a shell task requires role admin");
    // A bulk retry by an operator skips shell tasks.
    const bulk = await as(TOKENS.operator).control.bulkTasks({ action: BulkAction.RETRY, selection: { ids: [task!.id] } });
    expect(bulk).toMatchObject({ matched: 1n, eligible: 0n, changed: 0n });
  });

  it("may be opened to operators (--shell-role operator)", async () => {
    const config = loadConfig({ host: "127.0.0.1", port: 0, apiTokens: CONFIGURED, enableShell: true, shellRole: "operator" }, {});
    const plugins = builtinPlugins(config, api.database.logger);
    const server = await startApiServer({ db: api.database.db, registry: plugins.registry, config, logger: api.database.logger });
    try {
      await expect(as(TOKENS.operator, "connect", server.url).task.createTask(shell())).resolves.toMatchObject({ created: true });
      await expect(as(TOKENS.operator, "grpc", server.url).token.whoAmI({})).resolves.toMatchObject({ shellAllowed: true, shellRole: Role.OPERATOR });
      await expectConnectError(as(TOKENS.reader, "connect", server.url).task.createTask(shell()), Code.PermissionDenied, "requires role operator; token ro has reader");
    } finally {
      await server.close();
      await plugins.close();
    }
    expect(() => loadConfig({ shellRole: "reader" as never }, {})).toThrow(/TASK_SHELL_ROLE/);
  });
});

describe("a server without tokens", () => {
  it("takes a caller without a token as local (admin), and a stored token with its role", async () => {
    const admin = as(TOKENS.admin);
    const { secret } = await admin.token.createToken({ name: "local-reader", role: Role.READER });
    const config = loadConfig({ host: "127.0.0.1", port: 0 }, {});
    const plugins = builtinPlugins(config, api.database.logger);
    const server = await startApiServer({ db: api.database.db, registry: plugins.registry, config, logger: api.database.logger });
    try {
      await expect(as(undefined, "grpc", server.url).token.whoAmI({})).resolves.toMatchObject({ name: "local", local: true, role: Role.ADMIN });
      await expect(as(secret, "connect", server.url).token.whoAmI({})).resolves.toMatchObject({ name: "local-reader", role: Role.READER, local: false });
      await expectConnectError(as(secret, "connect", server.url).task.createTask(taskRequest()), Code.PermissionDenied, "requires role operator; token local-reader has reader");
      await expectConnectError(as("wrong", "connect", server.url).task.listTasks({}), Code.Unauthenticated);
    } finally {
      await server.close();
      await plugins.close();
    }
  });
});
