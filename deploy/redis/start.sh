#!/bin/sh
# Starts Redis with the ACL users of users.acl. Each password comes from its
# Docker secret and goes into the ACL file as a SHA-256 hash, so the file holds
# no password. Arguments: the redis-server command line (from docker-compose.yml).
set -eu
here=$(dirname "$0")
acl=${REDIS_ACL_FILE:-/tmp/profile-status-users.acl}
sha256() { printf '%s' "$(cat "$1")" | sha256sum | cut -d ' ' -f 1; }  # $(...) drops the trailing newline
umask 077
sed -e '/^#/d' \
    -e "s/@ADMIN_PASSWORD_SHA256@/$(sha256 "${REDIS_ADMIN_PASSWORD_FILE:-/run/secrets/redis_admin_password}")/" \
    -e "s/@PROJECTOR_PASSWORD_SHA256@/$(sha256 "${REDIS_PROJECTOR_PASSWORD_FILE:-/run/secrets/redis_projector_password}")/" \
    -e "s/@API_PASSWORD_SHA256@/$(sha256 "${REDIS_API_PASSWORD_FILE:-/run/secrets/redis_api_password}")/" \
    "$here/users.acl" > "$acl"
# The image's entrypoint drops to the redis user before starting the server.
if [ "$(id -u)" = 0 ] && id redis >/dev/null 2>&1; then
    chown redis "$acl"
fi
exec docker-entrypoint.sh "$@" --aclfile "$acl"
