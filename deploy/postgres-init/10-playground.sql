-- The run_query playground for docker-compose.yaml and docker-compose.demo.yaml: the same isolation the
-- embedded PostgreSQL of `task-cli up` sets up (src/embedded-postgres.ts). A database owned by a role
-- without superuser rights, with the service's own database closed to it, so a query task can neither
-- read nor change tasks. The postgres image runs this once, when it initialises an empty data volume,
-- as POSTGRES_USER connected to POSTGRES_DB (the service's database).
--
-- The password is a demo value: it is also in TASK_QUERY_TARGETS in docker-compose.demo.yaml.
CREATE ROLE playground LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'playground';
CREATE DATABASE playground OWNER playground;

-- Connecting needs CONNECT, which every role has through PUBLIC by default: take it away from the
-- service's database (whatever POSTGRES_DB is called) and from the maintenance database. POSTGRES_USER
-- is a superuser and is not affected.
DO $$
BEGIN
  EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', current_database());
END
$$;
REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;
