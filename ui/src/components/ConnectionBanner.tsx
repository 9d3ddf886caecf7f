import { useOutages } from "../services/connection";

/** A visible "reconnecting" notice while any live source has lost the server. */
export function ConnectionBanner() {
  const outages = useOutages();
  const attempt = Math.max(0, ...outages.map((o) => o.attempt));
  return (
    <div role="status" aria-live="polite" className="connection-slot">
      {outages.length > 0 && (
        <div className="connection-banner" data-testid="reconnecting">
          <span className="spinner" aria-hidden="true" /> Connection to the server lost — reconnecting
          {attempt > 1 ? ` (attempt ${attempt})` : ""}…
        </div>
      )}
    </div>
  );
}
