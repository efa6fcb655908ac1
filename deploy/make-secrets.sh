#!/bin/sh
# Creates ./secrets/ for docker-compose.yml: one random password per file, for
# each secret not there yet (existing ones are kept; delete one and re-run, then
# `docker compose up -d` to rotate it). The folder is closed to other users;
# the files inside must stay readable, since Compose mounts them as they are
# into containers that run as other users.
set -eu
cd "$(dirname "$0")/.."
mkdir -p secrets
chmod 700 secrets
for name in postgres_password pg_owner_password pg_projector_password pg_api_password \
            redis_admin_password redis_projector_password redis_api_password; do
    if [ ! -s "secrets/$name" ]; then
        # 32 random bytes, URL-safe base64: any character would do, these need no care anywhere.
        head -c 32 /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_' > "secrets/$name"
        chmod 644 "secrets/$name"
        echo "created secrets/$name"
    fi
done
