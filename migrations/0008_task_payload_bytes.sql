-- Sizes of each task's parameters and result as JSON text, kept by PostgreSQL itself, so ListTasks
-- can leave large payloads out of a page without converting every row's jsonb to text at read
-- time (a page of 1,000 tasks with 1 MB results would otherwise mean a gigabyte per page).
alter table tasks
  add column parameters_bytes integer generated always as (octet_length(parameters::text)) stored,
  add column result_bytes integer generated always as (octet_length(result::text)) stored;
