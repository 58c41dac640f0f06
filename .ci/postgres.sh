#!/usr/bin/env bash
# Install (if needed) and start a local PostgreSQL with a database for lshkit's tests.
# Needs root (CI runs as root); safe to run twice.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi
ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
pg_lsclusters -h | grep -q "^$ver main" || pg_createcluster "$ver" main >/dev/null
pg_ctlcluster "$ver" main start 2>/dev/null || true
for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
psql_() { runuser -u postgres -- psql -qtAX "$@"; }
psql_ -c "SELECT 1 FROM pg_roles WHERE rolname='lshkit'" | grep -q 1 \
  || psql_ -c "CREATE ROLE lshkit LOGIN PASSWORD 'lshkit'"
psql_ -c "SELECT 1 FROM pg_database WHERE datname='lshkit_test'" | grep -q 1 \
  || psql_ -c "CREATE DATABASE lshkit_test OWNER lshkit"
echo "postgres $ver ready on 127.0.0.1:5432 (database lshkit_test)"
