/**
 * A bare OTLP/HTTP receiver for the benchmark: a node http server on loopback that answers every
 * POST to /v1/traces with 200 and counts the spans in it (OTLP protobuf, the exporters' default),
 * so traced workers export to something that answers as fast as a collector on the same host can.
 */
import { createServer } from "node:http";

/** Reads a protobuf varint at `at`; returns the value and the offset after it. */
function varint(buf: Buffer, at: number): [number, number] {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = buf[at++]!;
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return [value, at];
    shift += 7;
  }
}

/** The length-delimited fields numbered `field` of one protobuf message (other fields skipped). */
function fieldsOf(buf: Buffer, field: number): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < buf.length) {
    const [key, next] = varint(buf, at);
    at = next;
    const wire = key & 7;
    if (wire === 0) at = varint(buf, at)[1];
    else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else if (wire === 2) {
      const [len, start] = varint(buf, at);
      if (key >>> 3 === field) out.push(buf.subarray(start, start + len));
      at = start + len;
    } else throw new Error(`unexpected protobuf wire type ${wire}`);
  }
  return out;
}

/** Spans in an ExportTraceServiceRequest: resource_spans (1) → scope_spans (2) → spans (2). */
export function countSpans(body: Buffer): number {
  let n = 0;
  for (const resource of fieldsOf(body, 1)) for (const scope of fieldsOf(resource, 2)) n += fieldsOf(scope, 2).length;
  return n;
}

/** Starts the receiver on a free loopback port. */
export async function startOtlpReceiver(): Promise<{ url: string; spans(): number; posts(): number; close(): Promise<void> }> {
  let spans = 0;
  let posts = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      posts++;
      if (req.url === "/v1/traces") spans += countSpans(Buffer.concat(chunks));
      res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    spans: () => spans,
    posts: () => posts,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
