import { ConnectError } from "@connectrpc/connect";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

/** One field the server rejected, e.g. { field: "parameters.to[0]", reason: "Invalid email address" }. */
export interface FieldViolation {
  field: string;
  reason: string;
}

const BAD_REQUEST_TYPE = "google.rpc.BadRequest";

/**
 * The field violations of an InvalidArgument error: from a google.rpc.BadRequest detail when the
 * server attaches one, else from the message, which lists them as "field: reason; field: reason".
 */
export function fieldViolations(err: unknown): FieldViolation[] {
  if (!(err instanceof ConnectError)) return [];
  const fromDetails = err.details.flatMap((d) => ("type" in d && d.type === BAD_REQUEST_TYPE && d.value instanceof Uint8Array ? decodeBadRequest(d.value) : []));
  if (fromDetails.length > 0) return fromDetails;
  return parseViolationMessage(err.rawMessage);
}

/** "name: is required; parameters.to: Invalid email" -> violations; text without fields gives []. */
export function parseViolationMessage(message: string): FieldViolation[] {
  const field = /(?:^|; )([a-z_][a-z0-9_]*(?:\.[A-Za-z0-9_]+|\[\d+\])*): /g;
  const starts = [...message.matchAll(field)];
  if (starts.length === 0 || starts[0]!.index !== 0) return [];
  return starts.map((m, i) => {
    const from = m.index! + m[0].length;
    const to = i + 1 < starts.length ? starts[i + 1]!.index! : message.length;
    return { field: m[1]!, reason: message.slice(from, to) };
  });
}

/**
 * Decodes google.rpc.BadRequest (field_violations = 1: { field = 1, description = 2 }) from its wire
 * bytes. Read by hand with the protobuf runtime's reader because the API's generated code does not
 * include google/rpc; once it does, use the generated BadRequestSchema with err.findDetails instead.
 */
export function decodeBadRequest(bytes: Uint8Array): FieldViolation[] {
  const violations: FieldViolation[] = [];
  try {
    const reader = new BinaryReader(bytes);
    while (reader.pos < reader.len) {
      const [no, wire] = reader.tag();
      if (no === 1 && wire === WireType.LengthDelimited) violations.push(decodeViolation(reader.bytes()));
      else reader.skip(wire);
    }
  } catch {
    return [];
  }
  return violations;
}

function decodeViolation(bytes: Uint8Array): FieldViolation {
  const reader = new BinaryReader(bytes);
  const violation: FieldViolation = { field: "", reason: "" };
  while (reader.pos < reader.len) {
    const [no, wire] = reader.tag();
    if (no === 1 && wire === WireType.LengthDelimited) violation.field = reader.string();
    else if (no === 2 && wire === WireType.LengthDelimited) violation.reason = reader.string();
    else reader.skip(wire);
  }
  return violation;
}

/** A message for people: the server's text without Connect's "[code]" prefix. */
export function errorText(err: unknown): string {
  if (err instanceof ConnectError) return err.rawMessage;
  return err instanceof Error ? err.message : String(err);
}
