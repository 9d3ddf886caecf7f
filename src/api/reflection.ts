import { toBinary, type DescFile, type DescMessage } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import * as v1 from "../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** gRPC status NOT_FOUND, as reflection error responses carry it. */
const NOT_FOUND = 5;

/** What a reflection request asks, in either protocol version (their messages are identical). */
type Question = v1.ServerReflectionRequest["messageRequest"] | v1alpha.ServerReflectionRequest["messageRequest"];

/** An answer, as the response's message_response oneof (without the version's type names). */
type Answer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/**
 * The schema the server's generated code embeds, indexed for reflection: which file defines each
 * fully qualified symbol (services, methods, messages, enums, extensions, nested ones too) and
 * each file by name, dependencies included. Built from the same descriptors the handlers use, so
 * it cannot drift from what the server speaks.
 */
class SchemaIndex {
  private readonly files = new Map<string, DescFile>();
  private readonly symbols = new Map<string, DescFile>();

  constructor(
    roots: DescFile[],
    readonly services: string[],
  ) {
    const add = (file: DescFile) => {
      if (this.files.has(file.proto.name)) return;
      this.files.set(file.proto.name, file);
      file.dependencies.forEach(add);
      const addMessage = (m: DescMessage) => {
        this.symbols.set(m.typeName, file);
        m.nestedMessages.forEach(addMessage);
        for (const e of m.nestedEnums) this.symbols.set(e.typeName, file);
        for (const x of m.nestedExtensions) this.symbols.set(x.typeName, file);
      };
      file.messages.forEach(addMessage);
      for (const e of file.enums) this.symbols.set(e.typeName, file);
      for (const x of file.extensions) this.symbols.set(x.typeName, file);
      for (const s of file.services) {
        this.symbols.set(s.typeName, file);
        for (const m of s.methods) this.symbols.set(`${s.typeName}.${m.name}`, file);
      }
    };
    roots.forEach(add);
  }

  /** A file and everything it imports, transitively, each serialized once. */
  private withDependencies(file: DescFile): Answer {
    const seen = new Set<string>();
    const out: Uint8Array[] = [];
    const visit = (f: DescFile) => {
      if (seen.has(f.proto.name)) return;
      seen.add(f.proto.name);
      out.push(toBinary(FileDescriptorProtoSchema, f.proto));
      f.dependencies.forEach(visit);
    };
    visit(file);
    return { case: "fileDescriptorResponse", value: { fileDescriptorProto: out } };
  }

  private extensionsOf(typeName: string) {
    return [...this.files.values()].flatMap((f) => {
      const all = [...f.extensions];
      const nested = (m: DescMessage): void => {
        all.push(...m.nestedExtensions);
        m.nestedMessages.forEach(nested);
      };
      f.messages.forEach(nested);
      return all.filter((x) => x.extendee.typeName === typeName).map((x) => ({ file: f, number: x.number }));
    });
  }

  answer(question: Question): Answer {
    const notFound = (what: string): Answer => ({ case: "errorResponse", value: { errorCode: NOT_FOUND, errorMessage: `${what} not found` } });
    switch (question.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { service: this.services.map((name) => ({ name })) } };
      case "fileByFilename": {
        const file = this.files.get(question.value);
        return file ? this.withDependencies(file) : notFound(`file "${question.value}"`);
      }
      case "fileContainingSymbol": {
        const file = this.symbols.get(question.value.replace(/^\./, ""));
        return file ? this.withDependencies(file) : notFound(`symbol "${question.value}"`);
      }
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = question.value;
        const found = this.extensionsOf(containingType).find((x) => x.number === extensionNumber);
        return found ? this.withDependencies(found.file) : notFound(`extension ${extensionNumber} of "${containingType}"`);
      }
      case "allExtensionNumbersOfType": {
        if (!this.symbols.has(question.value)) return notFound(`type "${question.value}"`);
        return { case: "allExtensionNumbersResponse", value: { baseTypeName: question.value, extensionNumber: this.extensionsOf(question.value).map((x) => x.number) } };
      }
      default:
        return { case: "errorResponse", value: { errorCode: 3, errorMessage: "empty reflection request" } };
    }
  }
}

/**
 * Registers gRPC server reflection, v1 and v1alpha (older grpcurl and other clients still ask
 * v1alpha), so grpcurl, buf curl and Postman can call the API without its .proto files.
 * `files` are the generated files of the services offered; `services` their full names.
 */
export function registerReflection(router: ConnectRouter, files: DescFile[], services: string[]): void {
  // Reflection describes itself too: clients that list services look each one up.
  const index = new SchemaIndex(
    [...files, v1.file_grpc_reflection_v1_reflection, v1alpha.file_grpc_reflection_v1alpha_reflection],
    [...services, v1.ServerReflection.typeName, v1alpha.ServerReflection.typeName],
  );
  const v1Impl: ServiceImpl<typeof v1.ServerReflection> = {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield { validHost: req.host, originalRequest: req, messageResponse: index.answer(req.messageRequest) };
    },
  };
  const v1alphaImpl: ServiceImpl<typeof v1alpha.ServerReflection> = {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield { validHost: req.host, originalRequest: req, messageResponse: index.answer(req.messageRequest) };
    },
  };
  router.service(v1.ServerReflection, v1Impl);
  router.service(v1alpha.ServerReflection, v1alphaImpl);
}
