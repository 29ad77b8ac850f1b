#!/usr/bin/env bash
# Drives the real binary: `herald phone normalize` output format, reasons, exit
# codes, CRLF and hostile input, and the examples/numbers.csv sample.
# Needs HERALD_BIN (the herald binary); HERALD_SOURCE_DIR defaults to the repo.
set -u
BIN=${HERALD_BIN:?set HERALD_BIN to the herald binary}
SRC=${HERALD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

# expect_line INPUT EXPECTED_OUTPUT_LINE [ARGS...]
expect_line() {
    local input=$1 want=$2 got
    shift 2
    got=$(printf '%s\n' "$input" | "$BIN" phone normalize "$@")
    if [ "$got" = "$want" ]; then ok; else bad "input '$input': got '$got', want '$want'"; fi
}

T=$'\t'
expect_line "(415) 555-0199" "(415) 555-0199${T}+14155550199${T}valid${T}US"
expect_line "+44 20 7946 0958" "+44 20 7946 0958${T}+442079460958${T}valid${T}GB"
expect_line "020 7946 0958" "020 7946 0958${T}+442079460958${T}valid${T}GB" --region GB
expect_line "020 7946 0958" "020 7946 0958${T}+442079460958${T}valid${T}GB" --region=gb
expect_line "12345" "12345${T}${T}invalid:too_short${T}"
expect_line "+1 555 555 5555" "+1 555 555 5555${T}${T}invalid:invalid_for_region${T}"
expect_line "+999 1234567" "+999 1234567${T}${T}invalid:unknown_country_code${T}"
expect_line "hello" "hello${T}${T}invalid:not_a_number${T}"
expect_line "41555501999999" "41555501999999${T}${T}invalid:too_long${T}"
expect_line "" "${T}${T}invalid:empty${T}"

# CRLF input: the CR is stripped, not echoed.
got=$(printf '415-555-0199\r\n' | "$BIN" phone normalize)
[ "$got" = "415-555-0199${T}+14155550199${T}valid${T}US" ] && ok || bad "CRLF: got '$got'"

# Last line without a newline is still processed.
got=$(printf '4155550199' | "$BIN" phone normalize)
[ "$got" = "4155550199${T}+14155550199${T}valid${T}US" ] && ok || bad "no final newline: got '$got'"

# Hostile lines: TABs, control bytes, NUL, invalid UTF-8, a 5000-byte line, emoji.
{
    printf 'a\tb\tc\n'
    printf '415\x01555\x1b0199\n'
    printf '415\x00555 0199\n'
    printf '\xff\xfe\xfd\n'
    head -c 5000 /dev/zero | tr '\0' '7'; printf '\n'
    printf '\xf0\x9f\x93\x9e\xf0\x9f\x93\x9e\n'
    printf '\r\n'
} > "$TMP/hostile.txt"
"$BIN" phone normalize < "$TMP/hostile.txt" > "$TMP/hostile.out"
rc=$?
[ $rc -eq 0 ] && ok || bad "hostile input: exit $rc"
lines=$(wc -l < "$TMP/hostile.out")
[ "$lines" -eq 7 ] && ok || bad "hostile input: $lines output lines, want 7"
if awk -F'\t' 'NF != 4 { exit 1 }' "$TMP/hostile.out"; then ok; else bad "hostile input: a record without 4 fields"; fi
grep -q $'^a b c\t\tinvalid:not_a_number\t$' "$TMP/hostile.out" && ok || bad "TABs in input not replaced"
grep -q $'invalid:too_long\t$' "$TMP/hostile.out" && ok || bad "long line not too_long"
grep -q $'^??? *\t\tinvalid:not_a_number' "$TMP/hostile.out" && ok || bad "invalid UTF-8 not replaced"
[ "$(sed -n 3p "$TMP/hostile.out" | cut -f3)" = "invalid:not_a_number" ] && ok || bad "NUL byte line"
[ "$(sed -n 7p "$TMP/hostile.out")" = "${T}${T}invalid:empty${T}" ] && ok || bad "CR-only line"

# Exit codes and one-line reasons.
"$BIN" phone normalize --region XX < /dev/null 2> "$TMP/err"
rc=$?
[ $rc -eq 2 ] && [ "$(wc -l < "$TMP/err")" -eq 1 ] && ok || bad "--region XX: exit $rc, stderr '$(cat "$TMP/err")'"
"$BIN" phone < /dev/null 2> /dev/null; rc=$?
[ $rc -eq 2 ] && ok || bad "no subcommand: exit $rc"
"$BIN" phone frobnicate < /dev/null 2> /dev/null; rc=$?
[ $rc -eq 2 ] && ok || bad "unknown subcommand: exit $rc"
"$BIN" phone normalize --bogus < /dev/null 2> /dev/null; rc=$?
[ $rc -eq 2 ] && ok || bad "unknown option: exit $rc"
"$BIN" phone normalize --region < /dev/null 2> /dev/null; rc=$?
[ $rc -eq 2 ] && ok || bad "--region without value: exit $rc"
"$BIN" phone normalize --help > /dev/null; rc=$?
[ $rc -eq 0 ] && ok || bad "--help: exit $rc"

# The sample CSV: the phone column of each row, one line out per line in.
csv="$SRC/examples/numbers.csv"
tail -n +2 "$csv" | cut -d, -f1 | "$BIN" phone normalize > "$TMP/csv.out"
rc=$?
rows=$(tail -n +2 "$csv" | wc -l)
[ $rc -eq 0 ] && [ "$(wc -l < "$TMP/csv.out")" -eq "$rows" ] && ok || bad "numbers.csv: exit $rc"
valid=$(grep -c $'\tvalid\t' "$TMP/csv.out")
invalid=$(grep -c $'\tinvalid:' "$TMP/csv.out")
[ "$valid" -eq 14 ] && [ "$invalid" -eq 6 ] && ok || bad "numbers.csv: $valid valid, $invalid invalid, want 14 and 6"

# Streaming: 200k lines go through with the output complete and in order.
awk 'BEGIN { for (i = 0; i < 200000; i++) printf "(415) 555-%04d\n", i % 10000 }' |
    "$BIN" phone normalize > "$TMP/many.out"
rc=$?
[ $rc -eq 0 ] && [ "$(wc -l < "$TMP/many.out")" -eq 200000 ] && ok || bad "200k lines: exit $rc"
[ "$(tail -n 1 "$TMP/many.out")" = "(415) 555-9999${T}+14155559999${T}valid${T}US" ] && ok || bad "200k lines: last record"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
