#!/bin/sh
# Run by the postgres image when it creates the database (first start on an empty pgdata volume).
# On an existing deployment run it once by hand:
#   docker compose exec postgres sh /docker-entrypoint-initdb.d/10-dashboard-role.sh
set -eu
dir=/docker-entrypoint-initdb.d
[ -f "$dir/dashboard-role.psql" ] || dir=$(dirname "$0")
psql --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v reader="${DASHBOARD_DB_USER:-emotions_dashboard}" \
    -v reader_password="$DASHBOARD_DB_PASSWORD" \
    -v owner="$POSTGRES_USER" \
    -v dbname="$POSTGRES_DB" \
    -f "$dir/dashboard-role.psql"
