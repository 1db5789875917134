#!/usr/bin/env bash
# Make sure the named services answer on 127.0.0.1; install (Debian) and start them if not.
#   scripts/services.sh redis postgres
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done; echo "port $1 never opened" >&2; return 1; }
apt_install() { as_root apt-get update -q && as_root apt-get install -y -q "$@"; }

ensure_redis() {
  port_open 6379 && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /tmp/attrib-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /tmp/attrib-redis
  wait_port 6379
}

ensure_postgres() {
  if ! port_open 5432; then
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_port 5432
  fi
  # The tests connect as postgres over 127.0.0.1 without a password. Debian's default asks for one
  # there, so a server this script installed gets a trust line for that user on loopback only.
  if ! psql -h 127.0.0.1 -U postgres -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
    hba=$(ls /etc/postgresql/*/main/pg_hba.conf | sort -V | tail -n 1)
    as_root sed -i '1i host all postgres 127.0.0.1/32 trust  # added by attrib scripts/services.sh for tests' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$(basename "$(dirname "$(dirname "$hba")")")" main reload
  fi
  # ... and database `test`; create it if this is a fresh server.
  if ! psql -h 127.0.0.1 -U postgres -d test -c 'SELECT 1' >/dev/null 2>&1; then
    as_root su postgres -c "psql -c 'CREATE DATABASE test'" >/dev/null 2>&1 || true
  fi
}

for service in "$@"; do
  case "$service" in
    redis) ensure_redis ;;
    postgres) ensure_postgres ;;
    *) echo "unknown service $service" >&2; exit 2 ;;
  esac
done
