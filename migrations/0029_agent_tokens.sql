-- Agent tokens (issue 26): a remote agent (task-cli agent) authenticates with a stored token of role
-- 'agent', which AgentService accepts and every other RPC refuses (src/api/roles.ts). Its queues fix
-- the queues the agent may claim. Agents themselves are rows in workers, like worker processes, but
-- hold no liveness lock (lock_key null): their liveness is their heartbeat (the lease).
alter table api_tokens drop constraint api_tokens_role_check;
alter table api_tokens add constraint api_tokens_role_check check (role in ('reader', 'operator', 'admin', 'agent'));
