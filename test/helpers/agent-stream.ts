import type { Client } from "@connectrpc/connect";
import type { AgentService, AttemptStart } from "../../src/gen/task/v1/agent_pb.js";

/**
 * Opens `agentId`'s Assignments stream and reads it up to its first start (pings and signals are
 * passed over); the stream stays open until `signal` aborts.
 */
export async function firstStart(agent: Client<typeof AgentService>, agentId: string, signal: AbortSignal): Promise<AttemptStart> {
  const stream = agent.assignments({ agentId }, { signal })[Symbol.asyncIterator]();
  for (;;) {
    const m = await stream.next();
    if (m.done) throw new Error(`the assignment stream of ${agentId} ended before a start`);
    if (m.value.kind.case === "start") return m.value.kind.value;
  }
}
