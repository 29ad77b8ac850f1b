# shellcheck shell=bash
# Helpers shared by the shell integration tests; sourced, not run:
#   . "$SRC/tests/integration/lib.sh" || exit 1
# Sourcing sets the counters pass=0 and failed=0.
#   ok NAME                    counts a pass, prints "ok - NAME"
#   bad NAME [DETAIL]          counts a failure, prints "FAIL - NAME" and DETAIL indented
#   check NAME GOT RE          ok if GOT matches the extended regex RE (grep -E, line by
#                              line), else bad with the first 600 bytes of GOT
#   check_short NAME GOT RE    check, printing 400 bytes of GOT on failure
#   check_long NAME GOT RE     check, printing 800 bytes of GOT on failure
#   check_flat NAME GOT RE     check against GOT with its newlines made spaces (one
#                              line, no trailing space); 600 bytes of GOT on failure
#   same NAME GOT WANT         ok if GOT is exactly WANT, else bad "got '..', want '..'"
#   expect NAME STATUS RE CMD...
#                              runs CMD; ok if it exits STATUS and its stdout+stderr
#                              matches RE, else bad with the whole output
#   expect_short NAME STATUS RE CMD...
#                              expect, printing 600 bytes of the output on failure
#   sql QUERY                  psql -XAtqc QUERY on $DATABASE_URL (a script may define
#                              its own sql instead)
#   fresh_db PREFIX            creates the database PREFIX_$$ in the fixture cluster
#                              (the state file $STATE) and exports DATABASE_URL for it;
#                              sets base (the cluster's postgres database) and db first;
#                              exits 1 when it cannot
#   master_key                 prints a new random HERALD_MASTER_KEY (64 hex digits)
#   summary                    prints "N passed, M failed"; returns non-zero on failure
#                              (a script's last command, so its exit status)

pass=0
failed=0

ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { failed=$((failed + 1)); echo "FAIL - $1"; [ -n "${2:-}" ] && printf '  %s\n' "$2"; }

# _check BYTES NAME GOT RE
_check() { if grep -Eq -- "$4" <<<"$3"; then ok "$2"; else bad "$2" "got: $(head -c "$1" <<<"$3")"; fi; }
check() { _check 600 "$@"; }
check_short() { _check 400 "$@"; }
check_long() { _check 800 "$@"; }
check_flat() { if grep -Eq -- "$3" <<<"$(tr '\n' ' ' <<<"$2" | sed 's/ $//')"; then ok "$1"; else bad "$1" "got: $(head -c 600 <<<"$2")"; fi; }

same() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1" "got '$2', want '$3'"; fi; }

# _expect BYTES NAME STATUS RE CMD...: BYTES empty prints the whole output on failure.
# CMD runs with only the locals the scripts' own expect() had (name want pattern out rc).
_expect() {
  local name=$2 want=$3 pattern=$4 out rc
  out=$("${@:5}" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want" ]; then
    bad "$name" "exit $rc, wanted $want: $(_excerpt "$1" "$out")"
  elif ! grep -Eq -- "$pattern" <<<"$out"; then
    bad "$name" "output does not match /$pattern/: $(_excerpt "$1" "$out")"
  else
    ok "$name"
  fi
}
_excerpt() { if [ -n "$1" ]; then head -c "$1" <<<"$2"; else printf '%s' "$2"; fi; }
expect() { _expect "" "$@"; }
expect_short() { _expect 600 "$@"; }

sql() { psql "$DATABASE_URL" -XAtqc "$1"; }

fresh_db() {
  base=$(cut -f2 "$STATE")
  db="$1_$$"
  psql "$base" -qc "CREATE DATABASE $db" >/dev/null || { echo "cannot create database $db"; exit 1; }
  export DATABASE_URL="${base/dbname=postgres/dbname=$db}"
}
master_key() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

summary() { echo "$pass passed, $failed failed"; [ "$failed" -eq 0 ]; }
