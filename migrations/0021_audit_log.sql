-- The audit log (src/store/audit.ts): one row per change an operator makes, written in the same
-- transaction as the change, so a change that rolls back leaves no row and a committed one always
-- has its row. Append-only: the API has no call that changes or deletes a row; only retention
-- (TASK_AUDIT_RETENTION) deletes rows older than its age. Reads are not recorded.
create table audit_events (
  id bigint generated always as identity primary key,
  at timestamptz not null default now(),
  -- Who: a token's name, `local` (a tokenless loopback server), or `schedule:<name>` (a tick).
  actor text not null,
  -- The actor's role (reader, operator, admin); null for a schedule's tick.
  role text,
  -- What: create, create_batch, cancel, bulk_cancel, queue_update, schedule_create, token_revoke, ...
  action text not null,
  -- On which resources: {"tasks": [...]}, {"queue": ...}, {"schedule": ...}, {"token": ...}; a bulk
  -- action stores its filter and the counts it hit, never every id.
  resources jsonb not null default '{}',
  -- The request's parameters, without secrets (a token is never stored).
  parameters jsonb not null default '{}',
  reason text,
  client_address text,
  user_agent text,
  request_id text
);

-- ListAuditEvents pages newest first, by actor or action or neither; retention deletes by age.
create index audit_events_at on audit_events (at, id);
create index audit_events_actor on audit_events (actor, id);
create index audit_events_action on audit_events (action, id);
