import type { ConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";

/** How connect-es words a request body that is not valid binary protobuf. */
const PARSE_BINARY = "parse binary:";

async function collect(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

/** The response with a binary-decode failure re-coded from Internal to InvalidArgument. */
async function recode(res: UniversalServerResponse): Promise<UniversalServerResponse> {
  const contentType = res.header?.get("content-type") ?? "";
  // Connect unary: the error is the JSON body of an HTTP 500.
  if (res.status === 500 && contentType.startsWith("application/json") && res.body) {
    const bytes = await collect(res.body as AsyncIterable<Uint8Array>);
    let error: { code?: string; message?: string } | undefined;
    try {
      error = JSON.parse(bytes.toString("utf8")) as typeof error;
    } catch {
      error = undefined;
    }
    if (error?.code !== "internal" || !error.message?.startsWith(PARSE_BINARY)) return { ...res, body: once(bytes) };
    const body = Buffer.from(JSON.stringify({ ...error, code: "invalid_argument" }));
    const header = new Headers(res.header);
    header.set("content-length", String(body.byteLength));
    return { ...res, status: 400, header, body: once(body) };
  }
  // gRPC: the status travels in trailers, filled in once the body has been written.
  const trailer = res.trailer;
  if (contentType.startsWith("application/grpc") && !contentType.startsWith("application/grpc-web") && trailer && res.body) {
    const body = res.body as AsyncIterable<Uint8Array>;
    return {
      ...res,
      body: (async function* () {
        yield* body;
        if (trailer.get("grpc-status") === "13" && decodeURIComponent(trailer.get("grpc-message") ?? "").startsWith(PARSE_BINARY)) {
          trailer.set("grpc-status", "3");
        }
      })(),
    };
  }
  return res;
}

/**
 * connect-es answers a request body that is not valid binary protobuf with Internal (its
 * createBinarySerialization wraps every decode error so), before any interceptor runs. It is the
 * caller's mistake, so this re-codes it as InvalidArgument for the Connect protocol and gRPC.
 * gRPC-Web, whose status is framed inside the body, still answers Internal.
 */
export function answerDecodeErrorsAsInvalidArgument(router: ConnectRouter): void {
  router.handlers.forEach((handler, i) => {
    const wrapped: UniversalHandler = Object.assign(async (req: Parameters<UniversalHandler>[0]) => recode(await handler(req)), handler);
    router.handlers[i] = wrapped;
  });
}
