#!/usr/bin/env bash
# herald db start|stop|status|migrate|url, run as the real binary: the embedded cluster
# in a fresh directory (DATABASE_URL unset), then an external server (the fixture
# cluster), then bad usage. Prints "N passed, M failed"; exits non-zero on failure.
set -uo pipefail

HERALD=${HERALD_BIN:?HERALD_BIN must point at the herald binary}
STATE=${HERALD_TEST_PG_STATE:-}
PSQL=${PSQL:-psql}
SRC=${HERALD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$SRC/tests/integration/lib.sh" || exit 1
dir=$(mktemp -d /tmp/herald-dbcli.XXXXXX)
chmod 755 "$dir"

cleanup() {
  if [ -d "$dir/.herald/pg/data" ]; then
    (cd "$dir" && env -u DATABASE_URL "$HERALD" db stop >/dev/null 2>&1) || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

cd "$dir"
unset DATABASE_URL

expect "status before start: not initialised" 0 "not initialised" "$HERALD" db status
t0=$(date +%s%N)
expect "start creates the cluster" 0 "^started" "$HERALD" db start
ms=$((($(date +%s%N) - t0) / 1000000))
if [ "$ms" -lt 5000 ]; then ok "start took ${ms} ms (< 5 s)"; else bad "start took ${ms} ms (>= 5 s)"; fi
[ -f .herald/pg/data/PG_VERSION ] && ok "data dir under .herald/pg/data" || bad "data dir under .herald/pg/data"
expect "start again is idempotent" 0 "already running" "$HERALD" db start
expect "status: running" 0 "^running \(pid [0-9]+" "$HERALD" db status
expect "url" 0 "^host=.* dbname=herald user=herald$" "$HERALD" db url
url=$("$HERALD" db url)
expect "first migrate applies" 0 "^applied 001_" "$HERALD" db migrate
expect "second migrate: up to date" 0 "^database is up to date \([0-9]+ migrations\)$" "$HERALD" db migrate
n=$(ls "${HERALD_SOURCE_DIR:-/nonexistent}"/storage/migrations/*.sql 2>/dev/null | wc -l)
expect "psql sees schema_migrations" 0 "^ *$n *$" "$PSQL" "$url" -Atc 'select count(*) from schema_migrations'
expect "stop" 0 "^stopped" "$HERALD" db stop
expect "status: stopped" 0 "^stopped" "$HERALD" db status
expect "stop again: not running" 0 "not running" "$HERALD" db stop
# migrate starts the cluster on first use, as every other command does.
expect "migrate restarts a stopped cluster" 0 "up to date" "$HERALD" db migrate
expect "status: running again" 0 "^running" "$HERALD" db status
expect "stop again" 0 "^stopped" "$HERALD" db stop

# An external server through DATABASE_URL.
if [ -n "$STATE" ] && [ -f "$STATE" ]; then
  base=$(cut -f2 "$STATE")
  dbname="herald_dbcli_$$"
  "$PSQL" "$base" -qc "DROP DATABASE IF EXISTS $dbname" >/dev/null 2>&1
  "$PSQL" "$base" -qc "CREATE DATABASE $dbname" >/dev/null
  ext="${base/dbname=postgres/dbname=$dbname} password=s3cret"
  expect "external: start says external" 0 "external" env DATABASE_URL="$ext" "$HERALD" db start
  expect "external: stop says external" 0 "external" env DATABASE_URL="$ext" "$HERALD" db stop
  expect "external: status connects" 0 "reachable.*database $dbname" env DATABASE_URL="$ext" "$HERALD" db status
  expect "external: migrate applies" 0 "^applied 001_" env DATABASE_URL="$ext" "$HERALD" db migrate
  expect "external: migrate again up to date" 0 "up to date" env DATABASE_URL="$ext" "$HERALD" db migrate
  out=$(DATABASE_URL="$ext" "$HERALD" db url 2>&1)
  if grep -q s3cret <<<"$out"; then bad "external: url hides the password" "$out"; else ok "external: url hides the password"; fi
  uri="postgresql://herald:s3cret@/$dbname?host=$(cut -f1 "$STATE")/run"
  out=$(DATABASE_URL="$uri" "$HERALD" db url 2>&1)
  if grep -q s3cret <<<"$out" || ! grep -q "dbname=$dbname" <<<"$out"; then
    bad "external URI: url masked" "$out"
  else
    ok "external URI: url masked"
  fi
  expect "external: unreachable status fails" 1 "cannot connect" env DATABASE_URL="host=/nonexistent-herald dbname=x" "$HERALD" db status
  "$PSQL" "$base" -qc "DROP DATABASE IF EXISTS $dbname" >/dev/null 2>&1
  [ -d .herald/pg/data ] && ! "$HERALD" db status | grep -q '^running' && ok "external commands left the embedded cluster alone" \
    || bad "external commands left the embedded cluster alone"
else
  bad "external DATABASE_URL tests" "HERALD_TEST_PG_STATE not set; run through ctest"
fi

# Bad usage.
expect "no subcommand: usage" 2 "usage" "$HERALD" db
expect "unknown subcommand: usage" 2 "unknown subcommand" "$HERALD" db frobnicate
expect "extra argument: usage" 2 "usage" "$HERALD" db status extra

summary
