-- Named API tokens with a role (src/api/roles.ts), made by `task-cli token create` (TokenService).
-- Only a SHA-256 hash of each token is stored: the token is 32 random bytes, so the hash cannot be
-- reversed or guessed, and a stolen copy of this table opens nothing. Tokens configured in
-- TASK_API_TOKENS are not stored here.
create table api_tokens (
  id bigint generated always as identity primary key,
  -- Unique for ever: a revoked token keeps its name, so logs and audit rows stay unambiguous.
  name text not null unique check (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
  role text not null check (role in ('reader', 'operator', 'admin')),
  -- SHA-256 of the token; every request looks it up by this (src/store/api-tokens.ts).
  token_hash bytea not null unique check (length(token_hash) = 32),
  -- The queues and task types the token may see and touch; empty: all.
  queues text[] not null default '{}',
  types text[] not null default '{}',
  created_at timestamptz not null default now(),
  expires_at timestamptz,
  revoked_at timestamptz,
  -- Updated at most once a minute per token, so a busy token does not write on every request.
  last_used_at timestamptz
);
