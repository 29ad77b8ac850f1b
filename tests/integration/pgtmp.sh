#!/usr/bin/env bash
# Throwaway PostgreSQL 15 cluster for one test run.
#   pgtmp.sh start STATEFILE   initdb --no-sync in a fresh /tmp dir, start it on a private
#                              unix socket, write "DIR<TAB>CONNINFO" to STATEFILE
#   pgtmp.sh stop STATEFILE    stop it and delete the dir
# initdb refuses root, so as root the cluster belongs to the postgres user (or nobody).
set -euo pipefail
cmd=${1:?start|stop}; state=${2:?statefile}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u "$owner" -- "$@"; else "$@"; fi
}
if [ "$(id -u)" -eq 0 ]; then
  owner=postgres; id "$owner" >/dev/null 2>&1 || owner=nobody
else
  owner=$(id -un)
fi

case "$cmd" in
start)
  if [ -f "$state" ]; then "$0" stop "$state" || true; fi
  dir=$(mktemp -d /tmp/herald-testpg.XXXXXX)
  chmod 755 "$dir"
  mkdir -p "$dir/data" "$dir/run"
  [ "$(id -u)" -eq 0 ] && chown -R "$owner" "$dir"
  as_owner "$PGBIN/initdb" --no-sync -D "$dir/data" -U herald --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  as_owner "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 \
    -o "-c listen_addresses='' -c unix_socket_directories=$dir/run -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null || { cat "$dir/postgres.log" >&2; exit 1; }
  printf '%s\t%s\n' "$dir" "host=$dir/run user=herald dbname=postgres" >"$state"
  echo "pgtmp: cluster up in $dir"
  ;;
stop)
  [ -f "$state" ] || exit 0
  dir=$(cut -f1 "$state")
  if [ -d "$dir/data" ]; then
    as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  case "$dir" in /tmp/herald-testpg.*) rm -rf "$dir" ;; esac
  rm -f "$state"
  echo "pgtmp: stopped"
  ;;
*) echo "usage: pgtmp.sh start|stop STATEFILE" >&2; exit 2 ;;
esac
