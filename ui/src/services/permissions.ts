import type { DescService } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { useQuery } from "@tanstack/react-query";
import { Role, TokenService, type WhoAmIResponse } from "../../../src/gen/task/v1/token_pb.js";
import { useAuthState } from "./auth";
import { transport } from "./client";

const tokenClient = createClient(TokenService, transport);

/** What the caller may do, from WhoAmI: the server's role table decides, the dashboard only asks. */
export interface Permissions {
  /** The caller, once the server has said. */
  who?: WhoAmIResponse;
  /** Whether the caller may call `service`'s `method` (false until known, so no button shows that would be refused). */
  can(service: DescService, method: string): boolean;
}

/** A role's name as the dashboard shows it. */
export function roleLabel(role: Role): string {
  return role === Role.ADMIN ? "admin" : role === Role.OPERATOR ? "operator" : role === Role.READER ? "reader" : "unknown";
}

/** The caller's permissions, asked again whenever the token changes. */
export function usePermissions(): Permissions {
  const auth = useAuthState();
  const whoAmI = useQuery({ queryKey: ["whoami", auth.epoch], queryFn: () => tokenClient.whoAmI({}), staleTime: Infinity, enabled: auth.kind === "ok" });
  const who = whoAmI.data;
  const allowed = new Set(who?.allowedMethods ?? []);
  return { who, can: (service, method) => allowed.has(`${service.typeName}/${method}`) };
}
