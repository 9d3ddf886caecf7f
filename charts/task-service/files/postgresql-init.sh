#!/bin/sh
# The run_query playground of the in-chart PostgreSQL (postgresql.playground): what
# deploy/postgres-init/10-playground.sql does for docker compose, with a generated password. A database
# owned by a role without superuser rights, with the service's database closed to it, so a query task
# can neither read nor change tasks. The postgres image runs this once, on an empty data volume.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -v password="$PLAYGROUND_PASSWORD" <<'SQL'
CREATE ROLE playground LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'password';
CREATE DATABASE playground OWNER playground;
SELECT format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', current_database()) \gexec
REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;
SQL
