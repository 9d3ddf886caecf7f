import { useSyncExternalStore } from "react";

/**
 * The API token the dashboard sends as `Authorization: Bearer ...`. Kept in sessionStorage: it lasts
 * for the tab, not forever, and no other site can read it.
 */
const STORAGE_KEY = "task-dashboard:token";

/** Whether the server wants a token: unknown until a call is refused. */
export interface AuthState {
  /**
   * ok: no call was refused (the server has no tokens, or ours is accepted); needed: the server
   * asked for a token and we sent none; refused: the server refused the token we sent.
   */
  kind: "ok" | "needed" | "refused";
  /** Counts token changes, so streams opened with an old token can reopen with the new one. */
  epoch: number;
}

let token = readStored();
let state: AuthState = { kind: "ok", epoch: 0 };
const listeners = new Set<() => void>();

function readStored(): string {
  try {
    return sessionStorage.getItem(STORAGE_KEY) ?? "";
  } catch {
    return "";
  }
}

function emit(next: AuthState): void {
  if (next.kind === state.kind && next.epoch === state.epoch) return;
  state = next;
  for (const listener of listeners) listener();
}

/** The token to send, or "" for none. */
export function currentToken(): string {
  return token;
}

/** Stores an accepted token and clears the prompt. */
export function saveToken(value: string): void {
  token = value;
  try {
    if (value) sessionStorage.setItem(STORAGE_KEY, value);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // Storage can be disabled; the token then lasts until the page is reloaded.
  }
  emit({ kind: "ok", epoch: state.epoch + 1 });
}

/** Forgets the token (sign out); the next refused call brings the prompt back. */
export function forgetToken(): void {
  saveToken("");
}

/** Records that the server refused a call for want of a valid token (sent: the token that call carried). */
export function noteUnauthenticated(sent: string): void {
  // A refusal of an older token must not override a newer one the user just entered.
  if (sent !== token) return;
  emit({ kind: sent ? "refused" : "needed", epoch: state.epoch });
}

/** The current auth state, re-rendering when it changes. */
export function useAuthState(): AuthState {
  return useSyncExternalStore(
    (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    () => state,
  );
}
