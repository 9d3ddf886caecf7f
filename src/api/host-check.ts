import { isLoopbackHost, type Config } from "../config.js";

/** The host name of a Host (or :authority) header, lower-case, without the port; IPv6 keeps its brackets. */
export function hostName(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(0, h.indexOf("]") + 1);
  const colon = h.indexOf(":");
  return colon === -1 ? h : h.slice(0, colon);
}

/**
 * Which Host headers the API answers, against DNS rebinding: a web page whose host name an attacker
 * points at 127.0.0.1 can reach a loopback server from the victim's browser, but its requests carry
 * the attacker's host name. With tokens every RPC must authenticate anyway, so any host is fine.
 * Without tokens: TASK_ALLOWED_HOSTS if set ("*" for any); otherwise loopback names when listening on
 * loopback, and any host when the operator chose an unauthenticated non-loopback listener (--insecure).
 * Returns undefined when every host is accepted.
 */
export function hostAllowList(config: Pick<Config, "apiTokens" | "allowedHosts" | "host">): ((header: string | undefined) => boolean) | undefined {
  if (config.apiTokens.length > 0) return undefined;
  if (config.allowedHosts.includes("*")) return undefined;
  if (config.allowedHosts.length > 0) {
    const allowed = new Set(config.allowedHosts.map((h) => hostName(h)));
    return (header) => header !== undefined && allowed.has(hostName(header));
  }
  if (!isLoopbackHost(config.host)) return undefined;
  return (header) => header !== undefined && isLoopbackHost(hostName(header));
}
