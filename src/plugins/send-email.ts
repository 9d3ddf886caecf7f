import { mkdir, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { createRequire } from "node:module";
import type { Transporter } from "nodemailer";
import type SMTPTransport from "nodemailer/lib/smtp-transport";
import type StreamTransport from "nodemailer/lib/stream-transport";
import { abortable } from "./abortable.js";
import { classifyFailure, isPermanentSmtpError } from "./failure-class.js";
import { sendEmailParametersFor } from "./schemas.js";
import type { Plugin } from "./types.js";

/** Where mail goes: an SMTP server, or .eml files in a directory when none is configured. */
export interface SendEmailOptions {
  smtpUrl?: string;
  outboxDir: string;
  defaultFrom: string;
  /** If not empty, the only `from` addresses (or "@domain" suffixes) a task may give; the default sender is always allowed. */
  allowedSenders?: string[];
}

/**
 * Sends one message. The Message-ID is derived from the task id, so a retried send carries the same
 * id and receiving systems can drop the duplicate.
 */
export function sendEmailPlugin(options: SendEmailOptions): Plugin<ReturnType<typeof sendEmailParametersFor>> {
  // nodemailer is loaded with the first message, not at start-up: most worker processes never send
  // mail, and it is a sizeable part of an idle worker's memory.
  let transports: { smtp?: Transporter<SMTPTransport.SentMessageInfo>; outbox: Transporter<StreamTransport.SentMessageInfo> } | undefined;
  const load = () => {
    if (transports) return transports;
    const nodemailer = createRequire(import.meta.url)("nodemailer") as typeof import("nodemailer");
    transports = {
      smtp: options.smtpUrl ? nodemailer.createTransport(options.smtpUrl) : undefined,
      outbox: nodemailer.createTransport({ streamTransport: true, buffer: true, newline: "unix" }),
    };
    return transports;
  };
  return {
    name: "send_email",
    description: "Sends an email through the configured SMTP server (or into the local outbox when none is set).",
    // Checked when the task is created, and again before each attempt (the list may have changed).
    parameters: sendEmailParametersFor(options.allowedSenders ?? []),
    defaults: { timeoutMs: 60_000, maxAttempts: 5 },
    async run(params, ctx) {
      const { smtp, outbox } = load();
      const messageId = `<task-${ctx.taskId}@task-service>`;
      const message = {
        from: params.from ?? options.defaultFrom,
        to: params.to,
        cc: params.cc,
        subject: params.subject,
        text: params.body,
        html: params.html,
        messageId,
        headers: { "X-Task-Id": ctx.taskId, "X-Task-Attempt": String(ctx.attempt) },
      };
      if (smtp) {
        const info = await abortable(ctx.signal, smtp.sendMail(message)).catch((err: unknown) => {
          throw ctx.signal.aborted ? err : classifyFailure(err, isPermanentSmtpError);
        });
        return { message_id: messageId, accepted: info.accepted.map(String), rejected: info.rejected.map(String), response: info.response };
      }
      const info = await abortable(ctx.signal, outbox.sendMail(message));
      await mkdir(options.outboxDir, { recursive: true });
      const file = path.join(options.outboxDir, `task-${ctx.taskId}.eml`);
      // Write then rename, so a reader never sees half a message.
      await writeFile(`${file}.tmp`, info.message as Buffer);
      await rename(`${file}.tmp`, file);
      return { message_id: messageId, accepted: params.to, outbox_file: file };
    },
  };
}
