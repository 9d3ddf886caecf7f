import { useEffect, useRef, useState, type FormEvent } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { Code, ConnectError } from "@connectrpc/connect";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { TaskService } from "../../../src/gen/task/v1/task_pb.js";
import { saveToken } from "../services/auth";
import { errorText } from "../services/field-errors";

/** Checks a token with one call before keeping it, so a wrong one is refused here, clearly. */
async function checkToken(token: string): Promise<"ok" | "refused" | string> {
  const probe = createClient(TaskService, createConnectTransport({ baseUrl: window.location.origin }));
  try {
    await probe.getTaskStatusCounts({}, { headers: { Authorization: `Bearer ${token}` } });
    return "ok";
  } catch (err) {
    if (err instanceof ConnectError && err.code === Code.Unauthenticated) return "refused";
    return errorText(err);
  }
}

/** A modal asking for the API token, shown when the server refuses a call. */
export function TokenPrompt({ refused }: { refused: boolean }) {
  const [value, setValue] = useState("");
  const [problem, setProblem] = useState(refused ? "The server refused the saved token. Enter a valid one." : "");
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const queryClient = useQueryClient();
  useEffect(() => input.current?.focus(), []);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const token = value.trim();
    if (!token) {
      setProblem("Enter a token.");
      return;
    }
    setBusy(true);
    const outcome = await checkToken(token);
    setBusy(false);
    if (outcome === "ok") {
      saveToken(token);
      await queryClient.resetQueries();
    } else if (outcome === "refused") {
      setProblem("The server refused this token. Check it and try again.");
      input.current?.select();
    } else {
      setProblem(`Could not check the token: ${outcome}`);
    }
  }

  return (
    <div className="modal-backdrop">
      <div className="modal" role="dialog" aria-modal="true" aria-labelledby="token-title" aria-describedby="token-help">
        <h2 id="token-title">API token required</h2>
        <p id="token-help">This server requires an API token (one of those in TASK_API_TOKENS). It is kept only for this browser tab.</p>
        <form onSubmit={submit} noValidate>
          <label htmlFor="token-input">Token</label>
          <input
            id="token-input"
            ref={input}
            type="password"
            autoComplete="current-password"
            value={value}
            onChange={(e) => setValue(e.target.value)}
            aria-invalid={problem ? true : undefined}
            aria-describedby={problem ? "token-problem" : undefined}
          />
          {problem && (
            <p id="token-problem" className="field-error" role="alert">
              {problem}
            </p>
          )}
          <div className="actions">
            <button type="submit" className="primary" disabled={busy}>
              {busy ? "Checking…" : "Continue"}
            </button>
          </div>
        </form>
      </div>
    </div>
  );
}
