/**
 * TLS for the API (issue 26 item 5): the server's certificate and key (`--tls-cert/--tls-key`,
 * TASK_TLS_CERT/TASK_TLS_KEY), and the CA a client trusts for https:// addresses (`--ca`, TASK_CA,
 * the SDK's `ca`). Both are read once, at start: a certificate renewed on disk needs a restart.
 */
import { readFileSync } from "node:fs";
import tls from "node:tls";
import { errorMessage } from "./errors.js";

/** The certificate chain and key the API serves, read and checked. */
export interface ServerTls {
  cert: Buffer;
  key: Buffer;
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read the TLS ${what} ${path}: ${errorMessage(err)}`);
  }
}

/**
 * Reads the server's certificate and key and checks that they are PEM and belong together, so a
 * bad file fails the start with a message naming it, not the first handshake.
 */
export function loadServerTls(certPath: string | undefined, keyPath: string | undefined): ServerTls | undefined {
  if (!certPath && !keyPath) return undefined;
  if (!certPath || !keyPath) throw new Error("TLS needs both a certificate and a key: pass --tls-cert and --tls-key (TASK_TLS_CERT, TASK_TLS_KEY) together");
  const cert = readPem(certPath, "certificate");
  const key = readPem(keyPath, "key");
  try {
    tls.createSecureContext({ cert, key });
  } catch (err) {
    throw new Error(`the TLS certificate ${certPath} and key ${keyPath} are not usable (PEM files of one certificate and its private key): ${errorMessage(err)}`);
  }
  return { cert, key };
}

/**
 * The CA certificates a client trusts: a path to a PEM file, or the PEM text itself. Undefined:
 * Node's default trust store. Given, it replaces that store for this client (as curl --cacert does).
 */
export function readCa(ca: string | Buffer | undefined): Buffer | undefined {
  if (ca === undefined || ca === "") return undefined;
  if (Buffer.isBuffer(ca)) return ca;
  if (ca.includes("-----BEGIN")) return Buffer.from(ca);
  try {
    return readFileSync(ca);
  } catch (err) {
    throw new Error(`cannot read the CA certificate ${ca}: ${errorMessage(err)}`);
  }
}
