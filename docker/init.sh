#!/usr/bin/env bash
# airflow-init (docker-compose.yaml): prepares everything once, before the other services start.
# Idempotent: safe to run again after changing pools.json or connections.json
# (`docker compose run --rm airflow-init`).
#   1. waits for the metadata database and migrates it
#   2. creates or updates the pools of docker/pools.json
#   3. imports the connections of docker/connections.json, when that file exists
#   4. writes the admin password for the UI (simple auth manager) from AIRFLOW_ADMIN_PASSWORD
#   5. hands the shared volumes (logs, sync state, auth) to the Airflow user
set -euo pipefail

pools_file="${MAILMIGRATE_POOLS_FILE:-/opt/mailmigrate/docker/pools.json}"
connections_file="${MAILMIGRATE_CONNECTIONS_FILE:-/opt/mailmigrate/docker/connections.json}"
passwords_file="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-}"
state_dir="${MAILMIGRATE_STATE_DIR:-/var/lib/mailmigrate/state}"
logs_dir="${AIRFLOW_LOGS_DIR:-/opt/airflow/logs}"
airflow_uid="${AIRFLOW_UID:-50000}"

say() { echo "[airflow-init] $*"; }

say "waiting for the metadata database"
airflow db check --retry 30 --retry-delay 2
say "migrating the metadata database"
airflow db migrate

say "pools from ${pools_file}"
airflow pools import "${pools_file}"

if [ -f "${connections_file}" ]; then
  say "connections from ${connections_file}"
  airflow connections import --overwrite "${connections_file}"
else
  say "no ${connections_file}: create the plan's connections in the UI (Admin > Connections)"
  say "or copy docker/connections.example.json to docker/connections.json and run init again"
fi

if [ -n "${passwords_file}" ]; then
  if [ -z "${AIRFLOW_ADMIN_PASSWORD:-}" ]; then
    say "AIRFLOW_ADMIN_PASSWORD is empty: set it in .env" >&2
    exit 2
  fi
  mkdir -p "$(dirname "${passwords_file}")"
  # JSON-encoded by Python: any character may appear in the password.
  python -c 'import json, os, sys; json.dump({os.environ.get("AIRFLOW_ADMIN_USER", "admin"): os.environ["AIRFLOW_ADMIN_PASSWORD"]}, open(sys.argv[1], "w"))' "${passwords_file}"
  chmod 0640 "${passwords_file}"
  say "UI login: ${AIRFLOW_ADMIN_USER:-admin} (password from AIRFLOW_ADMIN_PASSWORD)"
fi

if [ "$(id -u)" = "0" ]; then
  for dir in "${state_dir}" "${logs_dir}" ${passwords_file:+"$(dirname "${passwords_file}")"}; do
    mkdir -p "${dir}"
    chown -R "${airflow_uid}:0" "${dir}"
    chmod -R g+rwX "${dir}"
  done
fi
say "done"
