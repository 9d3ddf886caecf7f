import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sendEmailPlugin } from "../../src/plugins/send-email.js";
import { pluginContext, settleWithin, type TestPluginContext } from "../helpers/plugin-context.js";

/** A message as the SMTP server received it. */
interface Received {
  mailFrom: string;
  rcptTo: string[];
  raw: string;
}

/** Header name (lower case) to unfolded value, from a raw RFC 5322 message. */
function headersOf(raw: string): Map<string, string> {
  const head = raw.slice(0, raw.search(/\r?\n\r?\n/));
  const headers = new Map<string, string>();
  for (const line of head.replace(/\r?\n[ \t]+/g, " ").split(/\r?\n/)) {
    const colon = line.indexOf(":");
    headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  return headers;
}

const received: Received[] = [];
/** onData callbacks held back by the "stall" recipient, released before the server closes. */
const stalled: Array<() => void> = [];
let server: SMTPServer;
let smtpUrl: string;
let outboxRoot: string;

beforeAll(async () => {
  outboxRoot = await mkdtemp(path.join(os.tmpdir(), "send-email-"));
  server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    onRcptTo(address, _session, callback) {
      if (address.address.startsWith("nobody@")) return callback(Object.assign(new Error("no such mailbox"), { responseCode: 550 }));
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => {
        const rcptTo = session.envelope.rcptTo.map((a) => a.address);
        if (rcptTo.includes("stall@example.com")) return void stalled.push(() => callback());
        const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : "";
        received.push({ mailFrom, rcptTo, raw: Buffer.concat(chunks).toString("utf8") });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  smtpUrl = `smtp://127.0.0.1:${(server.server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const release of stalled) release();
  await new Promise<void>((resolve) => server.close(resolve));
  await rm(outboxRoot, { recursive: true, force: true });
});

function smtpPlugin() {
  return sendEmailPlugin({ smtpUrl, outboxDir: path.join(outboxRoot, "unused"), defaultFrom: "svc@example.com" });
}

async function send(plugin: ReturnType<typeof sendEmailPlugin>, raw: unknown, ctx: TestPluginContext) {
  return plugin.run(plugin.parameters.parse(raw), ctx);
}

/** The one message received for a task, found by its X-Task-Id header. */
function receivedFor(taskId: string): Received[] {
  return received.filter((m) => headersOf(m.raw).get("x-task-id") === taskId);
}

describe("send_email over SMTP", () => {
  it("delivers the message with its recipients, subject, bodies and task headers", async () => {
    const ctx = pluginContext({ attempt: 2 });
    const result = await send(
      smtpPlugin(),
      {
        to: ["alice@example.com", "bob@example.com"],
        cc: "carol@example.com",
        subject: "Quarterly report ready",
        body: "The report is attached in spirit.",
        html: "<p>The <b>report</b> is ready.</p>",
      },
      ctx,
    );

    expect(result).toMatchObject({
      message_id: `<task-${ctx.taskId}@task-service>`,
      accepted: ["alice@example.com", "bob@example.com", "carol@example.com"],
      rejected: [],
    });
    const [message] = receivedFor(ctx.taskId);
    expect(message).toBeDefined();
    expect(message!.mailFrom).toBe("svc@example.com");
    expect(message!.rcptTo).toEqual(["alice@example.com", "bob@example.com", "carol@example.com"]);
    const headers = headersOf(message!.raw);
    expect(headers.get("from")).toBe("svc@example.com");
    expect(headers.get("to")).toBe("alice@example.com, bob@example.com");
    expect(headers.get("cc")).toBe("carol@example.com");
    expect(headers.get("subject")).toBe("Quarterly report ready");
    expect(headers.get("message-id")).toBe(`<task-${ctx.taskId}@task-service>`);
    expect(headers.get("x-task-id")).toBe(ctx.taskId);
    expect(headers.get("x-task-attempt")).toBe("2");
    expect(headers.get("content-type")).toMatch(/^multipart\/alternative/);
    expect(message!.raw).toContain("The report is attached in spirit.");
    expect(message!.raw).toContain("<p>The <b>report</b> is ready.</p>");
  });

  it("uses the task's sender when given, and the same Message-ID on every attempt", async () => {
    const first = pluginContext({ attempt: 1 });
    const retry = pluginContext({ taskId: first.taskId, attempt: 2 });
    const params = { to: "dave@example.com", from: "reports@example.org", subject: "Hi", body: "Hello" };

    await send(smtpPlugin(), params, first);
    await send(smtpPlugin(), params, retry);

    const messages = receivedFor(first.taskId).map((m) => headersOf(m.raw));
    expect(messages.map((h) => h.get("message-id"))).toEqual([`<task-${first.taskId}@task-service>`, `<task-${first.taskId}@task-service>`]);
    expect(messages.map((h) => h.get("x-task-attempt"))).toEqual(["1", "2"]);
    expect(messages.map((h) => h.get("from"))).toEqual(["reports@example.org", "reports@example.org"]);
  });

  it("fails when the server rejects the recipient", async () => {
    const ctx = pluginContext();
    await expect(send(smtpPlugin(), { to: "nobody@example.com", subject: "Hi", body: "Hello" }, ctx)).rejects.toThrow(/no such mailbox|550/);
    expect(receivedFor(ctx.taskId)).toEqual([]);
  });

  it("reports recipients the server rejected when others were accepted", async () => {
    const ctx = pluginContext();
    const result = await send(smtpPlugin(), { to: ["erin@example.com", "nobody@example.com"], subject: "Hi", body: "Hello" }, ctx);

    expect(result).toMatchObject({ accepted: ["erin@example.com"], rejected: ["nobody@example.com"] });
    expect(receivedFor(ctx.taskId).map((m) => m.rcptTo)).toEqual([["erin@example.com"]]);
  });

  it("ends promptly with the abort reason when aborted while the server stalls", async () => {
    const ctx = pluginContext();
    const outcome = send(smtpPlugin(), { to: "stall@example.com", subject: "Hi", body: "Hello" }, ctx);
    // The server never answers the message data; only the abort can end the attempt.
    await expect.poll(() => stalled.length, { timeout: 10_000 }).toBe(1);
    const reason = new Error("timed out");
    ctx.controller.abort(reason);

    expect(await settleWithin(outcome, 10_000)).toEqual({ state: "rejected", reason });
  });
});

describe("send_email without SMTP", () => {
  it("writes the message to task-<id>.eml in the outbox directory, creating it", async () => {
    const outboxDir = path.join(outboxRoot, "nested", "outbox");
    const plugin = sendEmailPlugin({ outboxDir, defaultFrom: "svc@example.com" });
    const ctx = pluginContext();

    const result = await send(plugin, { to: "frank@example.com", subject: "Outbox subject line", body: "Body kept on disk." }, ctx);

    const file = path.join(outboxDir, `task-${ctx.taskId}.eml`);
    expect(result).toEqual({ message_id: `<task-${ctx.taskId}@task-service>`, accepted: ["frank@example.com"], outbox_file: file });
    expect(await readdir(outboxDir)).toEqual([`task-${ctx.taskId}.eml`]);
    const raw = await readFile(file, "utf8");
    const headers = headersOf(raw);
    expect(headers.get("subject")).toBe("Outbox subject line");
    expect(headers.get("to")).toBe("frank@example.com");
    expect(headers.get("from")).toBe("svc@example.com");
    expect(headers.get("message-id")).toBe(`<task-${ctx.taskId}@task-service>`);
    expect(raw).toContain("Body kept on disk.");
  });
});

describe("send_email parameters", () => {
  const parameters = sendEmailPlugin({ outboxDir: os.tmpdir(), defaultFrom: "svc@example.com" }).parameters;
  const issuePaths = (raw: unknown) => {
    const parsed = parameters.safeParse(raw);
    expect(parsed.success).toBe(false);
    return parsed.error!.issues.map((i) => i.path.join("."));
  };

  it("takes one recipient or a list, always as a list", () => {
    expect(parameters.parse({ to: "a@example.com", subject: "s", body: "b" }).to).toEqual(["a@example.com"]);
    expect(parameters.parse({ to: ["a@example.com", "b@example.com"], subject: "s", body: "b", cc: "c@example.com" })).toMatchObject({
      to: ["a@example.com", "b@example.com"],
      cc: ["c@example.com"],
    });
  });

  it("rejects invalid addresses, naming the bad entry", () => {
    expect(issuePaths({ to: "not-an-address", subject: "s", body: "b" })).toEqual(["to"]);
    expect(issuePaths({ to: ["a@example.com", "nope"], subject: "s", body: "b" })).toEqual(["to.1"]);
    expect(issuePaths({ to: "a@example.com", from: "nope", subject: "s", body: "b" })).toEqual(["from"]);
    expect(issuePaths({ to: [], subject: "s", body: "b" })).toEqual(["to"]);
  });

  it("requires a subject and rejects unknown keys", () => {
    expect(issuePaths({ to: "a@example.com", body: "b" })).toEqual(["subject"]);
    expect(issuePaths({ to: "a@example.com", subject: "", body: "b" })).toEqual(["subject"]);
    expect(issuePaths({ to: "a@example.com", subject: "s", body: "b", bcc: "x@example.com" })).toEqual([""]);
  });
});
