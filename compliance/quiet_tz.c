/*
 * Time-zone arithmetic for quiet hours, read from the system tz database
 * (/usr/share/zoneinfo, Debian package tzdata, or $TZDIR): a TZif reader (RFC 8536,
 * version 2 and later, 64-bit data) plus the POSIX TZ rule in its footer for instants
 * after the last transition.
 *
 * ICU's calendar would do the same, but the ICU on Debian 12 carries its own copy of
 * the tz data (2022e), which predates Mexico abolishing DST, Kazakhstan's single zone
 * and Paraguay's permanent summer time; the tzdata package is kept current by the
 * distribution's stable updates, so it is the source used here.
 */
#include "compliance/quiet_int.h"
#include "common/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TZIF_MAX_BYTES (512 * 1024)
#define MAX_OFFSET (26 * 3600)

typedef struct tz_rule_date {
    char kind; /* 'M' month.week.day, 'J' Julian 1-365 without Feb 29, 'N' zero-based day of year */
    int month, week, wday, yday;
    int32_t time; /* seconds after local midnight; may be negative or past 24h */
} tz_rule_date_t;

struct quiet_tz {
    int64_t *trans; /* ascending UTC instants */
    uint8_t *idx;   /* type index per transition */
    size_t ntrans;
    int32_t *utoff; /* per type, seconds east of UTC */
    size_t ntypes;
    int has_rule; /* footer present */
    int has_dst;
    int32_t std_off, dst_off; /* seconds east of UTC */
    tz_rule_date_t start, end;
};

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t quiet_days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;
    y -= m <= 2;
    era = floor_div(y, 400);
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void quiet_civil_from_days(int64_t days, int *y, int *m, int *d)
{
    int64_t z = days + 719468, era = floor_div(z, 146097), doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* Parses "[+-]hh[:mm[:ss]]" (hours up to 167) into seconds; returns the end or NULL. */
static const char *parse_hms(const char *s, int32_t *out)
{
    int sign = 1, h = 0, m = 0, sec = 0, n = 0;

    if (*s == '+' || *s == '-')
        sign = *s++ == '-' ? -1 : 1;
    while (*s >= '0' && *s <= '9' && n < 3) {
        h = h * 10 + (*s++ - '0');
        n++;
    }
    if (n == 0 || h > 167)
        return NULL;
    if (*s == ':') {
        s++;
        if (!(s[0] >= '0' && s[0] <= '5' && s[1] >= '0' && s[1] <= '9'))
            return NULL;
        m = (s[0] - '0') * 10 + (s[1] - '0');
        s += 2;
        if (*s == ':') {
            s++;
            if (!(s[0] >= '0' && s[0] <= '5' && s[1] >= '0' && s[1] <= '9'))
                return NULL;
            sec = (s[0] - '0') * 10 + (s[1] - '0');
            s += 2;
        }
    }
    *out = sign * (h * 3600 + m * 60 + sec);
    return s;
}

static const char *parse_name(const char *s)
{
    const char *b = s;
    if (*s == '<') {
        while (*s && *s != '>')
            s++;
        return *s == '>' && s - b >= 4 ? s + 1 : NULL;
    }
    while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'))
        s++;
    return s - b >= 3 ? s : NULL;
}

static const char *parse_num(const char *s, int lo, int hi, int *out)
{
    int v = 0, n = 0;
    while (*s >= '0' && *s <= '9' && n < 4) {
        v = v * 10 + (*s++ - '0');
        n++;
    }
    if (n == 0 || v < lo || v > hi)
        return NULL;
    *out = v;
    return s;
}

static const char *parse_rule_date(const char *s, tz_rule_date_t *r)
{
    if (*s == 'M') {
        r->kind = 'M';
        if (!(s = parse_num(s + 1, 1, 12, &r->month)) || *s++ != '.' || !(s = parse_num(s, 1, 5, &r->week)) ||
            *s++ != '.' || !(s = parse_num(s, 0, 6, &r->wday)))
            return NULL;
    } else if (*s == 'J') {
        r->kind = 'J';
        if (!(s = parse_num(s + 1, 1, 365, &r->yday)))
            return NULL;
    } else {
        r->kind = 'N';
        if (!(s = parse_num(s, 0, 365, &r->yday)))
            return NULL;
    }
    r->time = 2 * 3600;
    if (*s == '/')
        s = parse_hms(s + 1, &r->time);
    return s;
}

/* Parses a POSIX TZ string such as "EST5EDT,M3.2.0,M11.1.0" or "<+0545>-5:45". */
static int parse_posix_tz(const char *s, struct quiet_tz *tz)
{
    int32_t off;

    if (!(s = parse_name(s)) || !(s = parse_hms(s, &off)))
        return -1;
    tz->std_off = -off; /* POSIX offsets count west of Greenwich */
    tz->has_rule = 1;
    if (*s == '\0')
        return 0;
    if (!(s = parse_name(s)))
        return -1;
    tz->dst_off = tz->std_off + 3600;
    if (*s != ',' && *s != '\0') {
        if (!(s = parse_hms(s, &off)))
            return -1;
        tz->dst_off = -off;
    }
    if (*s++ != ',' || !(s = parse_rule_date(s, &tz->start)) || *s++ != ',' ||
        !(s = parse_rule_date(s, &tz->end)) || *s != '\0')
        return -1;
    tz->has_dst = 1;
    return 0;
}

static void tz_free(struct quiet_tz *tz)
{
    if (!tz)
        return;
    free(tz->trans);
    free(tz->idx);
    free(tz->utoff);
    free(tz);
}

static int parse_tzif(const unsigned char *p, size_t n, struct quiet_tz *tz)
{
    size_t v1, timecnt, typecnt, charcnt, leapcnt, isstdcnt, isutcnt, need, off;
    const unsigned char *h = p;

    if (n < 44 || memcmp(p, "TZif", 4) != 0 || p[4] < '2')
        return -1;
    /* Skip the version 1 block to reach the 64-bit one. */
    v1 = (size_t)be32(h + 32) * 5 + (size_t)be32(h + 36) * 6 + be32(h + 40) + (size_t)be32(h + 28) * 8 +
         be32(h + 24) + be32(h + 20);
    if (v1 > n - 44 || n - 44 - v1 < 44)
        return -1;
    h = p + 44 + v1;
    if (memcmp(h, "TZif", 4) != 0)
        return -1;
    isutcnt = be32(h + 20);
    isstdcnt = be32(h + 24);
    leapcnt = be32(h + 28);
    timecnt = be32(h + 32);
    typecnt = be32(h + 36);
    charcnt = be32(h + 40);
    if (leapcnt != 0 || typecnt == 0 || typecnt > 256 || timecnt > 100000 || charcnt > 10000 ||
        isutcnt > 256 || isstdcnt > 256)
        return -1; /* "right/" zones count leap seconds; they have no place in wall-clock rules */
    need = timecnt * 9 + typecnt * 6 + charcnt + isstdcnt + isutcnt;
    off = (size_t)(h - p) + 44;
    if (need > n - off)
        return -1;
    tz->ntrans = timecnt;
    tz->ntypes = typecnt;
    tz->trans = xcalloc(timecnt ? timecnt : 1, sizeof(int64_t));
    tz->idx = xcalloc(timecnt ? timecnt : 1, 1);
    tz->utoff = xcalloc(typecnt, sizeof(int32_t));
    for (size_t i = 0; i < timecnt; i++) {
        tz->trans[i] = be64(p + off + i * 8);
        if (i > 0 && tz->trans[i] <= tz->trans[i - 1])
            return -1;
    }
    off += timecnt * 8;
    for (size_t i = 0; i < timecnt; i++) {
        tz->idx[i] = p[off + i];
        if (tz->idx[i] >= typecnt)
            return -1;
    }
    off += timecnt;
    for (size_t i = 0; i < typecnt; i++) {
        int32_t u = (int32_t)be32(p + off + i * 6);
        if (u < -MAX_OFFSET || u > MAX_OFFSET)
            return -1;
        tz->utoff[i] = u;
    }
    off += typecnt * 6 + charcnt + isstdcnt + isutcnt;
    /* Footer: "\n" POSIX-TZ "\n"; an empty one means no rule beyond the table. */
    if (off < n && p[off] == '\n') {
        const unsigned char *nl = memchr(p + off + 1, '\n', n - off - 1);
        char rule[128];
        size_t len;
        if (!nl || (len = (size_t)(nl - (p + off + 1))) >= sizeof(rule))
            return -1;
        memcpy(rule, p + off + 1, len);
        rule[len] = '\0';
        if (len > 0 && parse_posix_tz(rule, tz) < 0)
            return -1;
    }
    return 0;
}

int quiet_tz_load(const char *name, quiet_tz_t **out)
{
    const char *dir = getenv("TZDIR");
    char path[512];
    unsigned char *data = NULL;
    size_t n;
    FILE *fp = NULL;
    struct quiet_tz *tz = NULL;
    int rc = QUIET_EZONE;

    *out = NULL;
    if (!name)
        return QUIET_EINVAL;
    n = strlen(name);
    if (n == 0 || n >= QUIET_TZ_MAX || name[0] == '/' || name[0] == '-' || strcmp(name, "Factory") == 0)
        return QUIET_EZONE;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        /* IANA names use ASCII letters, digits and "/_+-"; no "." keeps the path inside TZDIR. */
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '/' ||
              c == '_' || c == '+' || c == '-'))
            return QUIET_EZONE;
    }
    if (!dir || dir[0] != '/')
        dir = "/usr/share/zoneinfo";
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return QUIET_EZONE;
    fp = fopen(path, "rb");
    if (!fp)
        goto out;
    data = xmalloc(TZIF_MAX_BYTES);
    n = fread(data, 1, TZIF_MAX_BYTES, fp);
    if (ferror(fp) || n == TZIF_MAX_BYTES)
        goto out;
    tz = xcalloc(1, sizeof(*tz));
    if (parse_tzif(data, n, tz) < 0)
        goto out;
    *out = tz;
    tz = NULL;
    rc = 0;
out:
    tz_free(tz);
    free(data);
    if (fp)
        fclose(fp);
    return rc;
}

void quiet_tz_free(quiet_tz_t *tz)
{
    tz_free(tz);
}

/* Local midnight (as seconds, local "epoch") of the rule's day in year y, plus its time. */
static int64_t rule_local(const tz_rule_date_t *r, int y)
{
    int64_t days;
    if (r->kind == 'M') {
        static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        int64_t first = quiet_days_from_civil(y, r->month, 1);
        int wd1 = (int)((first % 7 + 11) % 7); /* 1970-01-01 was a Thursday */
        int dim = mdays[r->month - 1] + (r->month == 2 && is_leap(y));
        int day = 1 + (r->wday - wd1 + 7) % 7 + (r->week - 1) * 7;
        while (day > dim)
            day -= 7;
        days = first + day - 1;
    } else if (r->kind == 'J') {
        days = quiet_days_from_civil(y, 1, 1) + r->yday - 1 + (is_leap(y) && r->yday >= 60);
    } else {
        days = quiet_days_from_civil(y, 1, 1) + r->yday;
    }
    return days * 86400 + r->time;
}

static int32_t rule_offset(const struct quiet_tz *tz, int64_t utc)
{
    int y, m, d;
    int64_t start, end;

    if (!tz->has_dst)
        return tz->std_off;
    quiet_civil_from_days(floor_div(utc + tz->std_off, 86400), &y, &m, &d);
    /* The start is given in standard time, the end in daylight time. */
    start = rule_local(&tz->start, y) - tz->std_off;
    end = rule_local(&tz->end, y) - tz->dst_off;
    if (start < end)
        return utc >= start && utc < end ? tz->dst_off : tz->std_off;
    return utc >= end && utc < start ? tz->std_off : tz->dst_off;
}

int32_t quiet_tz_offset(const quiet_tz_t *tz, int64_t utc)
{
    size_t lo = 0, hi = tz->ntrans;

    if (tz->ntrans == 0)
        return tz->has_rule ? rule_offset(tz, utc) : tz->utoff[0];
    if (utc < tz->trans[0])
        return tz->utoff[0];
    if (utc >= tz->trans[tz->ntrans - 1] && tz->has_rule)
        return rule_offset(tz, utc);
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->trans[mid] <= utc)
            lo = mid;
        else
            hi = mid;
    }
    return tz->utoff[tz->idx[lo]];
}

int64_t quiet_tz_from_local(const quiet_tz_t *tz, int64_t local)
{
    int32_t oa = quiet_tz_offset(tz, local - 86400), ob = quiet_tz_offset(tz, local + 86400);
    int64_t ca = local - oa, cb = local - ob, lo, hi;
    int va = quiet_tz_offset(tz, ca) == oa, vb = quiet_tz_offset(tz, cb) == ob;

    if (va && vb)
        return ca < cb ? ca : cb;
    if (va)
        return ca;
    if (vb)
        return cb;
    /* Skipped by a forward jump: the first instant whose local time is past it. */
    lo = local - MAX_OFFSET - 86400;
    hi = local + MAX_OFFSET + 86400;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (mid + quiet_tz_offset(tz, mid) >= local)
            hi = mid;
        else
            lo = mid;
    }
    return hi;
}
