-- Remote agents as operators see them (issue 26 item 9): ListWorkers shows an agent's name, the
-- address its assignment stream comes from, the control-plane replica holding that stream and the
-- version it reported. Set when a stream opens (src/store/agents.ts recordAgentStream); null for
-- worker processes.
alter table workers
  add column agent_name text,
  add column address text,
  add column replica text,
  add column version text;
