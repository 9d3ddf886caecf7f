/**
 * The timings of an agent's liveness (issue 26 item 7; docs/design/fencing.md, "Agents"): how often
 * it heartbeats, how late an answer may come and still renew, when the agent stops an unrenewed
 * attempt, and the grace the server leaves an agent whose stream ended. The server derives them
 * from the lease and sends the agent's share in RegisterResponse.
 */
/** Timings of an agent session. */
export interface SessionTiming {
  /** A start not acknowledged within this is taken back and retried (default: 5 s, or half the lease if that is less). */
  ackMs: number;
  /** Claims are tried at least this often while slots are free (notifications wake them sooner). */
  pollMs: number;
  /** A ping is sent after this long without another message. */
  pingMs: number;
  /** The caller's token is checked again this often: a revoked token's stream ends within about this. */
  recheckMs: number;
  /** The lease (TASK_LEASE_MS): an attempt no heartbeat renewed for this long is lost. */
  leaseMs: number;
  /** After the stream ends, the agent's attempts are retried this long after unless a heartbeat renews them. */
  graceMs: number;
  /** The agent stops an attempt no heartbeat answer renewed within this (sent in RegisterResponse). */
  stopMs: number;
  /** A heartbeat answer renews only if it came back within this of sending it (sent in RegisterResponse). */
  renewalRttMs: number;
  /** How often the agent heartbeats (sent in RegisterResponse). */
  heartbeatMs: number;
}

/** Defaults: an unacknowledged start comes back within about 5 s; a revoked token's stream ends within about 2 s. */
export const DEFAULT_SESSION_TIMING: SessionTiming = {
  ackMs: 5_000,
  pollMs: 1_000,
  pingMs: 5_000,
  recheckMs: 2_000,
  leaseMs: 15_000,
  graceMs: 6_000,
  stopMs: 3_000,
  renewalRttMs: 1_000,
  heartbeatMs: 1_000,
};

/**
 * The liveness timings for a lease and a worker heartbeat interval, unless given: grace = min(6 s,
 * lease), stop = min(3 s, grace/2), renewal RTT = stop/3, heartbeat = min(1 s, stop/3, TASK_HEARTBEAT_MS).
 * Refuses timings that would let an agent run an attempt past the moment it may be retried:
 * stop + renewal RTT must be under grace, and grace at most the lease.
 */
export function agentTiming(leaseMs: number, workerHeartbeatMs: number, given: Partial<SessionTiming> = {}): SessionTiming {
  const graceMs = given.graceMs ?? Math.min(DEFAULT_SESSION_TIMING.graceMs, leaseMs);
  const stopMs = given.stopMs ?? Math.min(DEFAULT_SESSION_TIMING.stopMs, Math.floor(graceMs / 2));
  const renewalRttMs = given.renewalRttMs ?? Math.floor(stopMs / 3);
  const heartbeatMs = given.heartbeatMs ?? Math.min(DEFAULT_SESSION_TIMING.heartbeatMs, Math.floor(stopMs / 3), workerHeartbeatMs);
  const timing: SessionTiming = {
    ...DEFAULT_SESSION_TIMING,
    // An unacknowledged start is taken back well within the lease, which would otherwise rescue it.
    ackMs: Math.min(DEFAULT_SESSION_TIMING.ackMs, Math.floor(leaseMs / 2)),
    ...given,
    leaseMs,
    graceMs,
    stopMs,
    renewalRttMs,
    heartbeatMs,
  };
  if (stopMs + renewalRttMs >= graceMs || graceMs > leaseMs || heartbeatMs + renewalRttMs >= stopMs) {
    throw new Error(`agent timings leave no margin: stop ${stopMs} ms + renewal ${renewalRttMs} ms must be under grace ${graceMs} ms <= lease ${leaseMs} ms, and heartbeat ${heartbeatMs} ms + renewal under stop`);
  }
  return timing;
}

