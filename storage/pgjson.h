/*
 * Postgres values written as JSON the way Postgres's own json functions write them
 * (json_build_object(), to_json()), from the text libpq gives for cheaper columns: a
 * timestamptz as its epoch microseconds, a text[] as its array literal. The server then
 * skips the per-row work of its JSON functions (type lookups, timestamp output,
 * escaping) and herald does it here instead, writing the same values.
 */
#ifndef HERALD_STORAGE_PGJSON_H
#define HERALD_STORAGE_PGJSON_H
#include "common/buf.h"

#include <stddef.h>
#include <stdint.h>

/* The literal is not what Postgres writes for a text[] (BUF_ETOOBIG is -1, JSONW_EUTF8 -2). */
#define PGJSON_EINVAL (-3)

/*
 * Appends the JSON string Postgres writes for a timestamptz of us microseconds since
 * 1970-01-01 00:00 UTC when the session's TimeZone is UTC: "2026-09-24T23:04:01.17502+00:00"
 * (the fraction without its trailing zeros, none when it is zero; at least four year
 * digits; " BC" after the offset for years before 1 AD). Returns 0 or BUF_ETOOBIG.
 */
__attribute__((warn_unused_result)) int pgjson_timestamptz(buf_t *b, int64_t us);

/*
 * Appends the JSON array Postgres writes for a text[] whose output (array_out) is
 * lit[0..n): {a,"b c","q\"uote",NULL} gives ["a","b c","q\"uote",null]; a multi-
 * dimensional array gives nested arrays, and bounds ("[0:1]={a,b}") are dropped, as
 * Postgres does. Returns 0, BUF_ETOOBIG, JSONW_EUTF8 (an element is not UTF-8) or
 * PGJSON_EINVAL (not an array literal); on an error b may hold part of the array.
 */
__attribute__((warn_unused_result)) int pgjson_text_array(buf_t *b, const char *lit, size_t n);

#endif
