/*
 * Internals shared by the files of provider/: the fast reader of Twilio's
 * message and error JSON (msgjson.c), used by twilio.c and by its unit test.
 */
#ifndef HERALD_PROVIDER_INT_H
#define HERALD_PROVIDER_INT_H
#include <stddef.h>

/* The JSON types msgjson_scan() tells apart for the fields it extracts. */
typedef enum msgjson_type {
    MSGJSON_ABSENT = 0,
    MSGJSON_STRING,
    MSGJSON_INTEGER,
    MSGJSON_OTHER, /* null, true, false, an object or an array */
} msgjson_type_t;

/* The top-level keys msgjson_scan() extracts; the rest are validated and skipped. */
typedef enum msgjson_key {
    MJ_SID,
    MJ_ACCOUNT_SID,
    MJ_MESSAGING_SERVICE_SID,
    MJ_TO,
    MJ_FROM,
    MJ_STATUS,
    MJ_ERROR_MESSAGE,
    MJ_DATE_CREATED,
    MJ_DATE_SENT,
    MJ_DIRECTION,
    MJ_NUM_SEGMENTS,
    MJ_ERROR_CODE,
    MJ_CODE,
    MJ_MESSAGE,
    MJ_NKEYS
} msgjson_key_t;

/* MSGJSON_STRING values are decoded and truncated to this many bytes (NUL included). */
#define MSGJSON_MAX_STR 512

typedef struct msgjson_field {
    msgjson_type_t type;
    long long integer;         /* MSGJSON_INTEGER */
    size_t len;                /* MSGJSON_STRING: full decoded length, may exceed the copy */
    char str[MSGJSON_MAX_STR]; /* MSGJSON_STRING: decoded, NUL-terminated, cut at MSGJSON_MAX_STR - 1 */
} msgjson_field_t;

typedef struct msgjson {
    msgjson_field_t f[MJ_NKEYS];
} msgjson_t;

/*
 * Reads s[0..len) when it is a JSON object in the plain form Twilio and the
 * simulator produce, filling out with the last value of each known top-level key.
 * Returns 1 then. Returns 0 for anything it does not fully understand (invalid
 * JSON, a top-level array, \u escapes, real numbers, integers of more than 18
 * digits, nesting deeper than 32, NUL bytes...): the caller must then use a full
 * JSON parser (jansson), whose verdict is the reference. Whenever it returns 1,
 * jansson's json_loadb(s, len, 0) accepts the text as an object with the same
 * values for these keys.
 */
int msgjson_scan(const char *s, size_t len, msgjson_t *out);

#endif
