-- The roles of a least-privilege deployment, created or brought up to date.
-- Run by `roles.sh` as a superuser (psql variables: database, owner, projector,
-- api, capture; the passwords come from its environment, never from a command
-- line). Idempotent: passwords are set on every run, so changing a secret and
-- re-running rotates it. Grants on the tables come later, from `profile-status
-- migrate --projector-role ... --api-role ... --capture-owner ...` run as the owner.
SET client_min_messages = warning;
\getenv owner_password PROFILE_STATUS_OWNER_PASSWORD
\getenv projector_password PROFILE_STATUS_PROJECTOR_PASSWORD
\getenv api_password PROFILE_STATUS_API_PASSWORD

-- The owner: creates and owns the tables and the change capture; no superuser.
SELECT format('CREATE ROLE %I', :'owner') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner') \gexec
ALTER ROLE :"owner" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'owner_password';
-- The projector and the API: log in, and only what migrate grants them.
SELECT format('CREATE ROLE %I', :'projector') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'projector') \gexec
ALTER ROLE :"projector" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'projector_password';
SELECT format('CREATE ROLE %I', :'api') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'api') \gexec
ALTER ROLE :"api" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'api_password';
-- The capture function's owner: nobody logs in as it; the function runs as it
-- in every writer's transaction and may only append to the change log.
SELECT format('CREATE ROLE %I', :'capture') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'capture') \gexec
ALTER ROLE :"capture" WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
-- migrate (as the owner) may hand the capture function to it.
GRANT :"capture" TO :"owner";

-- The database belongs to the owner (from PostgreSQL 15 its `public` schema is
-- then the owner's to create in); nobody else may create anything in it, and
-- only our roles may connect (grant CONNECT to your writers' roles).
ALTER DATABASE :"database" OWNER TO :"owner";
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"database" TO :"projector", :"api";
\connect :"database"
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
