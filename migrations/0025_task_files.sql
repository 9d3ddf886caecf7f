-- Files in and out of tasks (issue 29, docs/ARCHITECTURE.md "Files"): inputs uploaded before
-- their task (POST /uploads) and outputs an attempt made, stored in chunks so neither side ever
-- holds a whole file in memory. src/store/files.ts is the only reader and writer.
--
-- A row is invisible until `complete`: an upload or an attempt's export that stops half-way (a
-- client that hangs up, a worker killed with -9) leaves only rows that nothing lists or serves,
-- and the sweep (sweepFiles) deletes them after TASK_UPLOAD_TTL_MS, as it does uploads no task
-- took. task_id is null while an input waits for the CreateTask that names its upload_ref; a
-- task's files go with it (retention, DeleteTask) by the cascade below.
create table task_files (
  id bigint generated always as identity primary key,
  task_id bigint references tasks (id) on delete cascade,
  -- The reference POST /uploads returns (random, unguessable); null for outputs.
  upload_ref text unique,
  -- The attempt that made an output; 0 for inputs.
  attempt int not null default 0,
  direction text not null check (direction in ('in', 'out')),
  name text not null,
  size bigint not null default 0,
  -- Hex SHA-256 of the bytes, set when complete.
  sha256 text,
  complete boolean not null default false,
  created_at timestamptz not null default now()
);
-- One visible file of a name per task, direction and attempt.
create unique index task_files_visible on task_files (task_id, direction, name, attempt) where complete;
-- The cascade from tasks and the listing of a task's files.
create index task_files_task on task_files (task_id);
-- The sweep: rows not complete, or complete uploads no task has taken.
create index task_files_unclaimed on task_files (created_at) where not complete or task_id is null;

create table task_file_chunks (
  file_id bigint not null references task_files (id) on delete cascade,
  seq int not null,
  data bytea not null,
  primary key (file_id, seq)
);
-- Chunks are stored as they come (no pglz): most files worth uploading are compressed already or
-- large, and compressing each 1 MiB chunk costs the writer more than the disk it saves.
alter table task_file_chunks alter column data set storage external;
