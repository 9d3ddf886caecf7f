import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { TaskService } from "../../../src/gen/task/v1/task_pb.js";
import { TaskControlService } from "../../../src/gen/task/v1/control_pb.js";
import { currentToken, noteUnauthenticated } from "./auth";

/** Adds the bearer token, and reports a refused token so the prompt can appear. */
const bearerToken: Interceptor = (next) => async (req) => {
  const sent = currentToken();
  if (sent) req.header.set("Authorization", `Bearer ${sent}`);
  const refused = (err: unknown) => {
    if (err instanceof ConnectError && err.code === Code.Unauthenticated) noteUnauthenticated(sent);
    return err;
  };
  let res;
  try {
    res = await next(req);
  } catch (err) {
    throw refused(err);
  }
  if (!res.stream) return res;
  // A stream is refused while it is read, after next() has returned.
  const messages = res.message;
  return {
    ...res,
    message: (async function* () {
      try {
        yield* messages;
      } catch (err) {
        throw refused(err);
      }
    })(),
  };
};

/**
 * The Connect transport to this page's own origin: the server that serves the dashboard also
 * serves the API, so no CORS and no configuration.
 */
export const transport = createConnectTransport({
  baseUrl: window.location.origin,
  interceptors: [bearerToken],
});

/** The generated TaskService client, for streams and calls outside queries. */
export const taskClient = createClient(TaskService, transport);

/** The generated TaskControlService client (bulk actions run several calls per action). */
export const controlClient = createClient(TaskControlService, transport);

/**
 * Whether an error means the server could not be reached (down, restarting, a proxy answering for
 * it) rather than that it answered no: those are retried with backoff and shown as "reconnecting".
 */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof ConnectError)) return true;
  return err.code === Code.Unavailable || err.code === Code.Unknown || err.code === Code.DeadlineExceeded;
}

/** A refusal for a missing or wrong token; the token prompt handles it. */
export function isAuthError(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.Unauthenticated;
}
