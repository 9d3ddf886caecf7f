-- The task type registry (issue 15). Worker processes register the types they serve when they start,
-- so the control plane can validate parameters of types it has no code for. One row per version of a
-- type: (name, schema_hash), where the hash is over the JSON Schema and the defaults, so a rolling
-- deploy that changes a schema adds a row instead of overwriting the one older workers still run.
-- The server validates against the type's current version: the newest (first registered last) of the
-- versions a live worker serves, or the newest of all when none is served (docs/design/task-types.md).
create table task_types (
  name text not null,
  schema_hash text not null,
  description text not null default '',
  -- json, not jsonb: jsonb reorders object keys, and the order of properties is what people read.
  parameter_schema json not null,
  default_timeout_ms integer not null,
  default_max_attempts integer not null,
  default_queue text,
  -- Set once, when the version first appears: re-registering an old version does not make it newer.
  registered_at timestamptz not null default now(),
  last_registered_at timestamptz not null default now(),
  primary key (name, schema_hash)
);
create index task_types_name_registered on task_types (name, registered_at desc);

-- Which version of each type a live worker process serves. Rows go with their worker: a clean stop
-- deletes the workers row, and the reconciler deletes the rows of workers it found dead.
create table task_type_workers (
  worker_id text not null references workers (id) on delete cascade,
  name text not null,
  schema_hash text not null,
  primary key (worker_id, name),
  foreign key (name, schema_hash) references task_types (name, schema_hash) on delete cascade
);
create index task_type_workers_version on task_type_workers (name, schema_hash);

-- The type names a worker serves (also added by issue 11's 0012, hence "if not exists").
alter table workers add column if not exists types text[] not null default '{}';
