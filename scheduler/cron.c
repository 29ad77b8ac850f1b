/*
 * Cron: parse 5-field expressions and find the next run in an IANA time zone.
 *
 * The search walks local calendar days and, inside a matching day, the matching
 * hours and minutes in order; each local wall time is turned into UTC through the
 * zone's offsets (compliance/quiet.h reads tzdata), so DST is whatever tzdata says.
 * A wall time that does not exist (spring-forward gap) is shifted by the gap; one
 * that exists twice (fall-back) counts once, at its first occurrence, so a run is
 * identified by its local wall time and never fires twice.
 */
#include "compliance/quiet.h"
#include "scheduler/scheduler.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const dow_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

/* Parses a number or a name at *p; returns -1 when neither is there. */
static int parse_atom(const char **p, const char *const *names, int nnames, int name_base)
{
    const char *s = *p;
    int v = 0, digits = 0;

    while (isdigit((unsigned char)*s) && digits < 4) {
        v = v * 10 + (*s - '0');
        s++;
        digits++;
    }
    if (digits > 0 && !isdigit((unsigned char)*s)) {
        *p = s;
        return v;
    }
    if (digits > 0)
        return -1;
    for (int i = 0; names && i < nnames; i++)
        if (strncasecmp(s, names[i], 3) == 0 && !isalpha((unsigned char)s[3])) {
            *p = s + 3;
            return i + name_base;
        }
    return -1;
}

/* Parses one field into bits lo..hi; sets *star when the field is '*' (any step). */
static int parse_field(const char *f, size_t len, int lo, int hi, const char *const *names, int nnames,
                       int name_base, uint64_t *bits, int *star, const char *what, char *err, size_t errlen)
{
    char buf[128];
    char *save = NULL, *item;

    if (len == 0 || len >= sizeof(buf)) {
        snprintf(err, errlen, "%s: empty or too long", what);
        return CRON_EINVAL;
    }
    memcpy(buf, f, len);
    buf[len] = '\0';
    if (buf[0] == ',' || buf[len - 1] == ',' || strstr(buf, ",,")) {
        snprintf(err, errlen, "%s: empty list item in '%s'", what, buf);
        return CRON_EINVAL;
    }
    *bits = 0;
    *star = strcmp(buf, "*") == 0;
    for (item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        const char *p = item;
        int a, b, step = 1;
        if (*p == '*') {
            a = lo;
            b = hi;
            p++;
        } else {
            a = parse_atom(&p, names, nnames, name_base);
            if (a < 0)
                goto bad;
            b = a;
            if (*p == '-') {
                p++;
                b = parse_atom(&p, names, nnames, name_base);
                if (b < 0)
                    goto bad;
            }
        }
        if (*p == '/') {
            p++;
            step = parse_atom(&p, NULL, 0, 0);
            if (step <= 0)
                goto bad;
            if (b == a && item[0] != '*')
                b = hi;
        }
        if (*p != '\0' || a < lo || b > hi || a > b)
            goto bad;
        for (int v = a; v <= b; v += step)
            *bits |= (uint64_t)1 << v;
    }
    if (*bits == 0)
        goto bad;
    return 0;
bad:
    snprintf(err, errlen, "%s: '%.*s' is not valid (range %d-%d)", what, (int)len, f, lo, hi);
    return CRON_EINVAL;
}

int cron_parse(const char *text, cron_expr_t *out, char *err, size_t errlen)
{
    static const struct {
        int lo, hi;
        const char *what;
    } fields[5] = {{0, 59, "minute"}, {0, 23, "hour"}, {1, 31, "day of month"}, {1, 12, "month"}, {0, 7, "day of week"}};
    const char *p = text;
    uint64_t bits[5];
    int star[5];
    char dummy[8];
    int i;

    if (!err) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    if (!text || !out) {
        snprintf(err, errlen, "no expression");
        return CRON_EINVAL;
    }
    for (i = 0; i < 5; i++) {
        const char *start;
        while (*p == ' ' || *p == '\t')
            p++;
        start = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if (p == start) {
            snprintf(err, errlen, "expected 5 fields (minute hour day-of-month month day-of-week), got %d", i);
            return CRON_EINVAL;
        }
        if (parse_field(start, (size_t)(p - start), fields[i].lo, fields[i].hi, i == 3 ? month_names : i == 4 ? dow_names : NULL,
                        i == 3 ? 12 : i == 4 ? 7 : 0, i == 3 ? 1 : 0, &bits[i], &star[i], fields[i].what, err,
                        errlen) != 0)
            return CRON_EINVAL;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p) {
        snprintf(err, errlen, "expected 5 fields, got more");
        return CRON_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    out->minute = bits[0];
    out->hour = (uint32_t)bits[1];
    out->dom = (uint32_t)bits[2];
    out->month = (uint16_t)bits[3];
    out->dow = (uint8_t)((bits[4] & 0x7f) | ((bits[4] >> 7) & 1));
    out->dom_star = star[2] != 0;
    out->dow_star = star[4] != 0;
    return 0;
}

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int y, int m, int d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (unsigned)((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1);
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    int64_t era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static int day_matches(const cron_expr_t *e, int64_t day, int month, int dom)
{
    int dow = (int)(((day % 7) + 11) % 7); /* 1970-01-01 was a Thursday */
    int dom_ok = (e->dom >> dom) & 1, dow_ok = (e->dow >> dow) & 1;

    if (!((e->month >> month) & 1))
        return 0;
    if (e->dom_star || e->dow_star)
        return dom_ok && dow_ok;
    return dom_ok || dow_ok;
}

/*
 * The UTC instant of local wall time `wall` (seconds, as if UTC) in zone: the earliest
 * instant showing it, or for a gap the instant at the same distance past the gap.
 */
static int local_to_utc(const char *zone, int64_t wall, int64_t *utc)
{
    quiet_local_t a, b;
    int64_t best = INT64_MAX;
    int offs[2];

    if (quiet_local_time(zone, wall - 86400, &a) != 0 || quiet_local_time(zone, wall + 86400, &b) != 0)
        return CRON_EZONE;
    offs[0] = a.utc_offset_s;
    offs[1] = b.utc_offset_s;
    for (int i = 0; i < 2; i++) {
        int64_t u = wall - offs[i];
        quiet_local_t l;
        if (quiet_local_time(zone, u, &l) != 0)
            return CRON_EZONE;
        if (u + l.utc_offset_s == wall && u < best)
            best = u;
    }
    if (best == INT64_MAX)
        best = wall - offs[0]; /* in the gap: the offset before it carries us past */
    *utc = best;
    return 0;
}

int cron_next(const cron_expr_t *e, const char *zone, int64_t after_utc, int64_t *next_utc, char local[17])
{
    quiet_local_t now;
    int64_t day0, first_min;

    if (!e || !zone || !next_utc)
        return CRON_EZONE;
    if (quiet_local_time(zone, after_utc, &now) != 0)
        return CRON_EZONE;
    day0 = days_from_civil(now.year, now.month, now.day);
    /* Start a little before local "now": a gap may map an earlier wall time past after_utc. */
    first_min = now.hour * 60 + now.minute - 180;
    if (first_min < 0) {
        day0--;
        first_min += 1440;
    }
    for (int64_t day = day0; day < day0 + CRON_HORIZON_DAYS; day++) {
        int y, mo, d;
        civil_from_days(day, &y, &mo, &d);
        if (!day_matches(e, day, mo, d))
            continue;
        for (int h = 0; h < 24; h++) {
            if (!((e->hour >> h) & 1))
                continue;
            for (int m = 0; m < 60; m++) {
                int64_t wall, u;
                if (!((e->minute >> m) & 1))
                    continue;
                if (day == day0 && h * 60 + m < first_min)
                    continue;
                wall = day * 86400 + h * 3600 + m * 60;
                if (local_to_utc(zone, wall, &u) != 0)
                    return CRON_EZONE;
                if (u <= after_utc)
                    continue;
                *next_utc = u;
                if (local) {
                    char tmp[48];
                    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d", y % 10000, mo, d, h, m);
                    memcpy(local, tmp, 16);
                    local[16] = '\0';
                }
                return 0;
            }
        }
    }
    return CRON_ENONE;
}
