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
  // gRPC-Web: the status is the last frame of the body (flag 0x80, then "name: value" lines).
  if (contentType.startsWith("application/grpc-web") && !contentType.startsWith("application/grpc-web-text") && res.body) {
    const body = res.body as AsyncIterable<Uint8Array>;
    return {
      ...res,
      body: (async function* () {
        for await (const chunk of body) yield recodeTrailerFrame(chunk);
      })(),
    };
  }
  return res;
}

/** A gRPC-Web trailer frame with status 13 for a decode error, re-coded to 3; other chunks as they are. */
function recodeTrailerFrame(chunk: Uint8Array): Uint8Array {
  if (chunk.length < 5 || chunk[0] !== 0x80) return chunk;
  const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (bytes.readUInt32BE(1) !== bytes.length - 5) return chunk;
  const text = bytes.subarray(5).toString("utf8");
  const message = /^grpc-message: ?(.*)$/im.exec(text)?.[1]?.trim() ?? "";
  if (!/^grpc-status: ?13\r?$/im.test(text) || !decodeURIComponent(message).startsWith(PARSE_BINARY)) return chunk;
  const recoded = Buffer.from(text.replace(/^grpc-status: ?13(\r?)$/im, "grpc-status: 3$1"));
  const header = Buffer.alloc(5);
  header[0] = 0x80;
  header.writeUInt32BE(recoded.length, 1);
  return Buffer.concat([header, recoded]);
}

/**
 * connect-es answers a request body that is not valid binary protobuf with Internal (its
 * createBinarySerialization wraps every decode error so), before any interceptor runs. It is the
 * caller's mistake, so this re-codes it as InvalidArgument for the Connect protocol, gRPC and
 * binary gRPC-Web (not grpc-web-text, whose frames are base64).
 */
export function answerDecodeErrorsAsInvalidArgument(router: ConnectRouter): void {
  router.handlers.forEach((handler, i) => {
    const wrapped: UniversalHandler = Object.assign(async (req: Parameters<UniversalHandler>[0]) => recode(await handler(req)), handler);
    router.handlers[i] = wrapped;
  });
}
