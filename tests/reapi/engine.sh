#!/usr/bin/env bash
# Starts (up) or stops (down) a private REAPI v2 engine on loopback ports: BuildGrid
# 0.9.1 from its venv, its scheduler's database in a private PostgreSQL 15 cluster,
# and tests/reapi/bot.py as its first worker; everything lives under ROOT.
#
#   tests/reapi/engine.sh up ROOT     # prints grpc://127.0.0.1:PORT once it serves
#   tests/reapi/engine.sh worker ROOT NAME   # one more worker, logging to ROOT/bot-NAME.log
#   tests/reapi/engine.sh down ROOT   # stops all of it (ROOT may then be removed)
#
# BUILDGRID_VENV: the venv holding bgd (default: the checkout's target/buildgrid-venv,
# which scripts/install-deps.sh makes). BOT_PROPERTIES: more platform properties the
# bot advertises (KEY=VALUE;KEY=VALUE). ENGINE_TLS_DIR: a directory of server.crt,
# server.key and client-ca.crt (PEM); if set, the engine also serves on a TLS port
# that requires a client certificate signed by client-ca.crt, printed second as
# grpcs://127.0.0.1:PORT. Each `up` starts from an empty database: a
# database kept from an earlier run remembers its bots, and hands jobs to dead ones.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv=${BUILDGRID_VENV:-$repo/target/buildgrid-venv}
pg_bin=/usr/lib/postgresql/15/bin

usage() {
  echo "usage: $0 up|down ROOT, or $0 worker ROOT NAME" >&2
  exit 2
}
action=${1:-}
root=${2:-}
case $action in
up | down) (($# == 2)) || usage ;;
worker) (($# == 3)) || usage ;;
*) usage ;;
esac

# Runs a PostgreSQL tool: as the postgres account when we are root (initdb refuses
# root), as ourselves otherwise.
as_db_owner() {
  if ((EUID == 0)); then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  "$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() {
  local port=$1 what=$2 log=$3
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "engine: $what did not open port $port; its log:" >&2
  tail -n 30 "$log" >&2
  return 1
}

# Starts a program in a process group of its own, so that `down` ends all it starts.
start() {
  local name=$1
  shift
  setsid "$@" >"$root/$name.log" 2>&1 </dev/null &
  echo $! >"$root/$name.pid"
}

stop() {
  local name=$1 pid
  [[ -f $root/$name.pid ]] || return 0
  pid=$(<"$root/$name.pid")
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 -- "-$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$root/$name.pid"
}

# Starts bot.py as NAME (its log ROOT/NAME.log) against the engine at ADDRESS, with
# BOT_PROPERTIES from the environment, and waits until the engine has its session.
start_bot() {
  local name=$1 address=$2
  BOT_REMOTE=$address start "$name" "$venv/bin/python" -u "$here/bot.py"
  for _ in $(seq 1 600); do
    grep -q "session" "$root/$name.log" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "session" "$root/$name.log" || {
    echo "engine: the worker $name did not register; its log:" >&2
    tail -n 30 "$root/$name.log" >&2
    exit 1
  }
}

# A worker besides the first, for tests of scheduling between workers.
worker() {
  local name=$1 endpoint
  endpoint=$(<"$root/endpoint")
  start_bot "bot-$name" "${endpoint#grpc://}"
}

up() {
  [[ -x $venv/bin/bgd ]] || {
    echo "engine: no BuildGrid in $venv; run scripts/install-deps.sh" >&2
    exit 1
  }
  [[ -x $pg_bin/initdb ]] || {
    echo "engine: no PostgreSQL 15 in $pg_bin; run scripts/install-deps.sh" >&2
    exit 1
  }
  mkdir -p "$root"
  # Whatever fails on the way, nothing stays running.
  trap down EXIT
  local pg=$root/postgres pg_port grpc_port database
  rm -rf "$pg"
  mkdir -p "$pg"
  ((EUID == 0)) && chown postgres:postgres "$pg"
  pg_port=$(free_port)
  as_db_owner "$pg_bin/initdb" -D "$pg/data" -U bgd --auth=trust -E UTF8 >"$root/initdb.log" 2>&1 || {
    # Typically, as root: the postgres account cannot reach ROOT (a 0700 parent).
    echo "engine: initdb failed (the database's account must be able to reach $pg); its log:" >&2
    tail -n 5 "$root/initdb.log" >&2
    exit 1
  }
  as_db_owner "$pg_bin/pg_ctl" -D "$pg/data" -l "$pg/server.log" -w \
    -o "-p $pg_port -k $pg -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
  as_db_owner "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U bgd bgd
  database=postgresql://bgd@127.0.0.1:$pg_port/bgd
  "$venv/bin/bgd" migrate apply "$database" >"$root/migrate.log" 2>&1

  grpc_port=$(free_port)
  # The key JWTs for the instance "secured" must be signed with (HS256).
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$root/jwt.secret"
  sed -e "s|@PORT@|$grpc_port|" -e "s|@DATABASE@|$database|" -e "s|@JWT_SECRET@|$root/jwt.secret|" \
    "$here/server.yml.in" >"$root/server.yml"
  local tls_port=
  if [[ -n ${ENGINE_TLS_DIR:-} ]]; then
    tls_port=$(free_port)
    # A second channel, after the `server:` line.
    awk -v port="$tls_port" -v dir="$ENGINE_TLS_DIR" '{ print } /^server:$/ {
      print "  - !channel"
      print "    address: \"127.0.0.1:" port "\""
      print "    insecure-mode: false"
      print "    credentials:"
      print "      tls-server-key: " dir "/server.key"
      print "      tls-server-cert: " dir "/server.crt"
      print "      tls-client-certs: " dir "/client-ca.crt"
    }' "$root/server.yml" >"$root/server.yml.tls"
    mv "$root/server.yml.tls" "$root/server.yml"
  fi
  start server "$venv/bin/bgd" server start -v "$root/server.yml"
  wait_for_port "$grpc_port" "BuildGrid" "$root/server.log"
  [[ -z $tls_port ]] || wait_for_port "$tls_port" "BuildGrid (TLS)" "$root/server.log"
  start_bot bot "127.0.0.1:$grpc_port"
  trap - EXIT
  echo "grpc://127.0.0.1:$grpc_port" | tee "$root/endpoint"
  [[ -z $tls_port ]] || echo "grpcs://127.0.0.1:$tls_port" | tee "$root/tls-endpoint"
}

down() {
  local pidfile
  for pidfile in "$root"/bot*.pid; do
    [[ -e $pidfile ]] || continue
    pidfile=${pidfile##*/}
    stop "${pidfile%.pid}"
  done
  stop server
  if [[ -d $root/postgres/data ]]; then
    as_db_owner "$pg_bin/pg_ctl" -D "$root/postgres/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

case $action in
up) up ;;
worker) worker "$3" ;;
down) down ;;
esac
