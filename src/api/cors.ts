import type http from "node:http";
import type http2 from "node:http2";
import { cors as connectCors } from "@connectrpc/connect";
import cors from "cors";
import { REQUEST_ID_HEADER } from "./audit-context.js";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;
type Handler = (req: Request, res: Response) => void;

/**
 * Lets browser pages on the given origins call the API (Connect and gRPC-Web from fetch): answers
 * preflight requests, and allows and exposes the headers those protocols use (connect-es's lists)
 * plus Authorization for bearer tokens and x-request-id (sent and answered: the audit log records it). `origins` are exact origins (`https://app.example.com`) or
 * `*` for any; empty leaves the handler as it is (no CORS headers: browsers refuse cross-origin
 * calls). Uses the `cors` middleware, which also sets `Vary: Origin`.
 */
export function withCors(handler: Handler, origins: string[]): Handler {
  if (origins.length === 0) return handler;
  const middleware = cors({
    origin: origins.includes("*") ? "*" : origins,
    methods: [...connectCors.allowedMethods],
    allowedHeaders: [...connectCors.allowedHeaders, "Authorization", REQUEST_ID_HEADER],
    exposedHeaders: [...connectCors.exposedHeaders, REQUEST_ID_HEADER],
    // Browsers cache a preflight for at most 2 hours (Chromium); saves one round trip per call.
    maxAge: 7200,
  });
  return (req, res) =>
    middleware(req as http.IncomingMessage, res as http.ServerResponse, (err?: unknown) => {
      if (err) {
        res.writeHead(500);
        res.end();
      } else handler(req, res);
    });
}
