#!/bin/sh
# Creates or updates the least-privilege roles (roles.sql) as the superuser.
# In docker-compose.yml the one-shot `roles` service runs it with the postgres
# image's psql; elsewhere set PG* (host, port, user) and the *_FILE variables.
# Passwords are read from files (Docker secrets), never from the command line.
set -eu
here=$(dirname "$0")
secret() { cat "$1"; }  # $(...) drops the trailing newline, as profile-status does
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    PGPASSWORD=$(secret "$POSTGRES_PASSWORD_FILE")
    export PGPASSWORD
fi
PROFILE_STATUS_OWNER_PASSWORD=$(secret "$OWNER_PASSWORD_FILE")
PROFILE_STATUS_PROJECTOR_PASSWORD=$(secret "$PROJECTOR_PASSWORD_FILE")
PROFILE_STATUS_API_PASSWORD=$(secret "$API_PASSWORD_FILE")
export PROFILE_STATUS_OWNER_PASSWORD PROFILE_STATUS_PROJECTOR_PASSWORD PROFILE_STATUS_API_PASSWORD
exec psql --no-psqlrc --quiet --set ON_ERROR_STOP=1 \
    --dbname "${PGDATABASE:-postgres}" \
    --set database="${PROFILE_STATUS_DATABASE:-profile_status}" \
    --set owner="${PROFILE_STATUS_OWNER_ROLE:-profile_status}" \
    --set projector="${PROFILE_STATUS_PROJECTOR_ROLE:-profile_status_projector}" \
    --set api="${PROFILE_STATUS_API_ROLE:-profile_status_api}" \
    --set capture="${PROFILE_STATUS_CAPTURE_ROLE:-profile_status_capture}" \
    --file "$here/roles.sql"
