/*
 * Postgres values as Postgres's json functions write them (pgjson.h). The timestamp
 * follows EncodeDateTime() in XSD style (what JsonEncodeDateTime() asks for) with the
 * zone at UTC; the array follows array_to_json() of the literal array_out() wrote.
 */
#include "storage/pgjson.h"

#include "common/jsonw.h"

#include <string.h>

#define US_PER_DAY INT64_C(86400000000)

/* Proleptic Gregorian date of a day number (0 = 1970-01-01), as Postgres's j2date(). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Writes v with at least width digits, zero-padded, ending just before end; returns the start. */
static char *digits(char *end, uint64_t v, int width)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
        width--;
    } while (v || width > 0);
    return end;
}

int pgjson_timestamptz(buf_t *b, int64_t us)
{
    char out[64], *p = out;
    char num[24];
    int64_t days = us / US_PER_DAY, rem = us % US_PER_DAY, year;
    int month, day, frac, secs;
    const char *s;

    if (rem < 0) {
        rem += US_PER_DAY;
        days--;
    }
    civil_from_days(days, &year, &month, &day);
    secs = (int)(rem / 1000000);
    frac = (int)(rem % 1000000);

    *p++ = '"';
    /* Year 0 is 1 BC: Postgres prints the year counted back and " BC" at the end. */
    s = digits(num + sizeof(num), (uint64_t)(year > 0 ? year : 1 - year), 4);
    memcpy(p, s, (size_t)(num + sizeof(num) - s));
    p += num + sizeof(num) - s;
    *p++ = '-';
    p = digits(p + 2, (uint64_t)month, 2) + 2;
    *p++ = '-';
    p = digits(p + 2, (uint64_t)day, 2) + 2;
    *p++ = 'T';
    p = digits(p + 2, (uint64_t)(secs / 3600), 2) + 2;
    *p++ = ':';
    p = digits(p + 2, (uint64_t)(secs / 60 % 60), 2) + 2;
    *p++ = ':';
    p = digits(p + 2, (uint64_t)(secs % 60), 2) + 2;
    if (frac) {
        /* Six digits, then the trailing zeros dropped (AppendSeconds()). */
        int n = 6;
        *p++ = '.';
        digits(p + 6, (uint64_t)frac, 6);
        while (p[n - 1] == '0')
            n--;
        p += n;
    }
    memcpy(p, "+00:00", 6);
    p += 6;
    if (year <= 0) {
        memcpy(p, " BC", 3);
        p += 3;
    }
    *p++ = '"';
    return buf_append(b, out, (size_t)(p - out));
}

/* The end of a quoted element starting after its opening quote, or NULL; *escapes says whether it has any. */
static const char *quoted_end(const char *p, const char *end, int *escapes)
{
    *escapes = 0;
    for (; p < end; p++) {
        if (*p == '"')
            return p;
        if (*p == '\\') {
            *escapes = 1;
            if (++p == end)
                return NULL;
        }
    }
    return NULL;
}

int pgjson_text_array(buf_t *b, const char *lit, size_t n)
{
    const char *p = lit, *end = lit + n;
    buf_t scratch;
    int depth = 0, rc = 0, want_item = 0;

    buf_init(&scratch, n + 1);
    /* Bounds other than 1 come first ("[0:2]={...}"); JSON has no place for them. */
    if (p < end && *p == '[') {
        const char *eq = memchr(p, '=', n);
        if (!eq) {
            rc = PGJSON_EINVAL;
            goto out;
        }
        p = eq + 1;
    }
    if (p == end || *p != '{') {
        rc = PGJSON_EINVAL;
        goto out;
    }
    while (rc == 0 && p < end) {
        char c = *p;
        if (c == '{') {
            if (depth > 0 && !want_item) {
                rc = PGJSON_EINVAL;
                break;
            }
            rc = buf_append(b, "[", 1);
            depth++;
            want_item = 1;
            p++;
            if (p < end && *p == '}')
                want_item = 0; /* {} */
            continue;
        }
        if (c == '}') {
            if (depth == 0 || want_item) {
                rc = PGJSON_EINVAL;
                break;
            }
            rc = buf_append(b, "]", 1);
            depth--;
            p++;
            if (depth == 0)
                break;
            continue;
        }
        if (c == ',') {
            if (depth == 0 || want_item) {
                rc = PGJSON_EINVAL;
                break;
            }
            rc = buf_append(b, ",", 1);
            want_item = 1;
            p++;
            continue;
        }
        if (!want_item || depth == 0) {
            rc = PGJSON_EINVAL;
            break;
        }
        want_item = 0;
        if (c == '"') {
            int escapes;
            const char *q = quoted_end(p + 1, end, &escapes);
            if (!q) {
                rc = PGJSON_EINVAL;
                break;
            }
            if (!escapes) {
                rc = jsonw_string(b, p + 1, (size_t)(q - p - 1));
            } else {
                /* array_out escapes only '"' and '\\'; any escaped byte stands for itself. */
                buf_reset(&scratch);
                for (const char *r = p + 1; r < q && rc == 0; r++) {
                    if (*r == '\\')
                        r++;
                    rc = buf_append(&scratch, r, 1);
                }
                if (rc == 0)
                    rc = jsonw_string(b, scratch.data ? scratch.data : "", scratch.len);
            }
            p = q + 1;
        } else {
            /* Unquoted: never empty, never holding a quote, a backslash, braces or the comma. */
            const char *q = p;
            while (q < end && *q != ',' && *q != '}' && *q != '{' && *q != '"' && *q != '\\')
                q++;
            if (q == end || *q == '{' || *q == '"' || *q == '\\') {
                rc = PGJSON_EINVAL;
                break;
            }
            if (q - p == 4 && memcmp(p, "NULL", 4) == 0)
                rc = buf_append(b, "null", 4);
            else
                rc = jsonw_string(b, p, (size_t)(q - p));
            p = q;
        }
    }
    if (rc == 0 && (depth != 0 || p != end))
        rc = PGJSON_EINVAL;
out:
    buf_close(&scratch);
    return rc;
}
