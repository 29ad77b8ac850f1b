/*
 * Quiet hours: picks a recipient's candidate time zones and decides, for an instant,
 * whether it lies inside the legal (and campaign) sending window in all of them and
 * when the common window next opens.
 *
 * Local times come from the system tz database (compliance/quiet_tz.c), read once per
 * zone per check, so DST is whatever tzdata says. A window opening is found as the wall
 * time "day D, start of window" converted back to UTC, taking a wall time skipped by
 * spring-forward as the first valid instant after it and a repeated wall time (fall-back)
 * as its first occurrence, so the opening is the earliest instant whose local time is in
 * the window.
 * Several zones are combined by jumping to the latest single-zone opening until every
 * zone is open at the same instant.
 */
#include "compliance/quiet.h"
#include "compliance/quiet_int.h"

#include <string.h>
#include <strings.h>

/* 1900-01-01 and 2200-01-01 UTC: far enough for any schedule, small enough for double milliseconds. */
#define MIN_UTC (-2208988800LL)
#define MAX_UTC 7258118400LL
#define MAX_ITERATIONS 256

typedef struct zone_ctx {
    quiet_tz_t *tz;
    const char *country;
    const char *subdivision;
} zone_ctx_t;

int quiet_zone_valid(const char *name)
{
    quiet_tz_t *tz = NULL;
    int rc = quiet_tz_load(name, &tz);

    quiet_tz_free(tz);
    return rc;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static void local_at(const quiet_tz_t *tz, int64_t utc, quiet_local_t *out)
{
    int32_t off = quiet_tz_offset(tz, utc);
    int64_t local = utc + off, days = floor_div(local, 86400), sec = local - days * 86400;

    quiet_civil_from_days(days, &out->year, &out->month, &out->day);
    out->hour = (int)(sec / 3600);
    out->minute = (int)(sec / 60 % 60);
    out->second = (int)(sec % 60);
    out->wday = (int)((days % 7 + 11) % 7); /* 1970-01-01 was a Thursday */
    out->utc_offset_s = off;
}

/* The legal window for a local weekday, intersected with the campaign's; start >= end means closed. */
static const char *window_for(const zone_ctx_t *z, const quiet_policy_t *policy, int wday, int *start,
                              int *end)
{
    const quiet_rule_t *hit = NULL;
    const char *closed_by = NULL;

    for (size_t i = 0; i < quiet_rules_len && !hit; i++) {
        const quiet_rule_t *r = &quiet_rules[i];
        if (r->country[0] == '\0') {
            if (!closed_by)
                hit = r;
            break;
        }
        if (strcmp(r->country, z->country) != 0 || strcmp(r->subdivision, z->subdivision) != 0)
            continue;
        closed_by = r->name;
        if (r->wdays_mask & (1u << wday))
            hit = r;
    }
    if (!hit) {
        *start = *end = 0;
        return closed_by;
    }
    *start = hit->start_min;
    *end = hit->end_min;
    if (policy) {
        if (policy->start_min > *start)
            *start = policy->start_min;
        if (policy->end_min < *end)
            *end = policy->end_min;
    }
    if (*start >= *end)
        *start = *end = 0;
    return hit->name;
}

/* The earliest instant >= t at which zone z alone allows sending. */
static int zone_next_open(const zone_ctx_t *z, const quiet_policy_t *policy, int64_t t, int64_t *open)
{
    quiet_local_t now, at;
    int64_t today;
    int ws, we;

    local_at(z->tz, t, &now);
    today = quiet_days_from_civil(now.year, now.month, now.day);
    for (int k = 0; k <= QUIET_HORIZON_DAYS; k++) {
        int64_t days = today + k, cand;
        window_for(z, policy, (int)((days % 7 + 11) % 7), &ws, &we);
        if (ws >= we)
            continue;
        if (k == 0) {
            int sec = now.hour * 3600 + now.minute * 60 + now.second;
            if (sec >= ws * 60 && sec < we * 60) {
                *open = t;
                return 0;
            }
            if (sec >= we * 60)
                continue;
        }
        cand = quiet_tz_from_local(z->tz, days * 86400 + (int64_t)ws * 60);
        local_at(z->tz, cand, &at);
        /*
         * Only a window starting inside a DST overlap or gap could fail these checks;
         * skipping that day errs on the late side.
         */
        if (cand <= t || quiet_days_from_civil(at.year, at.month, at.day) != days ||
            at.hour * 60 + at.minute < ws || at.hour * 60 + at.minute >= we)
            continue;
        *open = cand;
        return 0;
    }
    return QUIET_ENOWINDOW;
}

int quiet_check(const quiet_zones_t *zones, const quiet_policy_t *policy, int64_t now_utc,
                quiet_decision_t *out)
{
    zone_ctx_t ctx[QUIET_MAX_ZONES];
    int rc = 0, n, who = 0;
    int64_t t = now_utc;

    if (!zones || !out || zones->count < 1 || zones->count > QUIET_MAX_ZONES || now_utc < MIN_UTC ||
        now_utc > MAX_UTC)
        return QUIET_EINVAL;
    if (policy &&
        (policy->start_min < 0 || policy->end_min > 24 * 60 || policy->start_min >= policy->end_min))
        return QUIET_EINVAL;
    memset(out, 0, sizeof(*out));
    memset(ctx, 0, sizeof(ctx));
    n = zones->count;
    for (int i = 0; i < n; i++) {
        ctx[i].country = zones->region;
        ctx[i].subdivision = zones->subdivision;
        rc = quiet_tz_load(zones->zone[i], &ctx[i].tz);
        if (rc < 0)
            goto out;
    }

    out->count = n;
    for (int i = 0; i < n; i++) {
        quiet_zone_state_t *zs = &out->zone[i];
        local_at(ctx[i].tz, now_utc, &zs->local);
        window_for(&ctx[i], policy, zs->local.wday, &zs->window_start_min, &zs->window_end_min);
        rc = zone_next_open(&ctx[i], policy, now_utc, &zs->next_open_utc);
        if (rc < 0)
            goto out;
        zs->allowed = zs->next_open_utc == now_utc;
    }

    for (int iter = 0;; iter++) {
        int all_open = 1;
        int64_t latest = t;
        if (iter == MAX_ITERATIONS || t - now_utc > (int64_t)QUIET_HORIZON_DAYS * 86400) {
            rc = QUIET_ENOWINDOW;
            goto out;
        }
        for (int i = 0; i < n; i++) {
            int64_t o;
            rc = zone_next_open(&ctx[i], policy, t, &o);
            if (rc < 0)
                goto out;
            if (o != t)
                all_open = 0;
            if (o > latest) {
                latest = o;
                who = i;
            }
        }
        if (all_open)
            break;
        t = latest;
    }
    out->allowed = t == now_utc;
    out->next_open_utc = t;
    out->deciding = out->allowed ? 0 : who;
    local_at(ctx[out->deciding].tz, t, &out->next_local);
    {
        int s, e;
        out->rule = window_for(&ctx[out->deciding], policy, out->zone[out->deciding].local.wday, &s, &e);
    }
out:
    for (int i = 0; i < n; i++)
        quiet_tz_free(ctx[i].tz);
    return rc;
}

static void set_zones(quiet_zones_t *out, const char *const *zones, quiet_source_t src)
{
    out->count = 0;
    for (int i = 0; i < QUIET_MAX_ZONES && zones[i]; i++) {
        strncpy(out->zone[i], zones[i], QUIET_TZ_MAX - 1);
        out->count++;
    }
    out->source = src;
}

static const quiet_subdiv_t *subdiv_by_code(const char *country, const char *code)
{
    for (size_t i = 0; i < quiet_subdivs_len; i++)
        if ((!country[0] || strcmp(quiet_subdivs[i].country, country) == 0) &&
            strcmp(quiet_subdivs[i].code, code) == 0)
            return &quiet_subdivs[i];
    return NULL;
}

/* Finds the state or province in a geocoder description: "Jacksonville, FL" or "Florida". */
static const quiet_subdiv_t *find_subdiv(const char *country, const char *desc)
{
    size_t n;
    char code[3];

    if (!desc)
        return NULL;
    while (*desc == ' ')
        desc++;
    n = strnlen(desc, 256);
    while (n > 0 && desc[n - 1] == ' ')
        n--;
    if (n == 0 || n >= 256)
        return NULL;
    if (n >= 4 && desc[n - 3] == ' ' && desc[n - 4] == ',' && desc[n - 2] >= 'A' && desc[n - 2] <= 'Z' &&
        desc[n - 1] >= 'A' && desc[n - 1] <= 'Z') {
        code[0] = desc[n - 2];
        code[1] = desc[n - 1];
        code[2] = '\0';
        return subdiv_by_code(country, code);
    }
    for (size_t i = 0; i < quiet_subdivs_len; i++)
        if (quiet_subdivs[i].code[0] != '*' &&
            (!country[0] || strcmp(quiet_subdivs[i].country, country) == 0) &&
            strlen(quiet_subdivs[i].name) == n && strncasecmp(quiet_subdivs[i].name, desc, n) == 0)
            return &quiet_subdivs[i];
    for (size_t i = 0; i < quiet_aliases_len; i++)
        if ((!country[0] || strcmp(quiet_aliases[i].country, country) == 0) &&
            strlen(quiet_aliases[i].name) == n && strncasecmp(quiet_aliases[i].name, desc, n) == 0)
            return subdiv_by_code(quiet_aliases[i].country, quiet_aliases[i].code);
    return NULL;
}

int quiet_zones_for(const char *explicit_tz, const char *region, const char *geo_desc,
                    const char *campaign_tz, quiet_zones_t *out)
{
    const quiet_subdiv_t *sub = NULL;
    int rc;

    if (!out)
        return QUIET_EINVAL;
    memset(out, 0, sizeof(*out));
    if (explicit_tz && !explicit_tz[0])
        explicit_tz = NULL;
    if (campaign_tz && !campaign_tz[0])
        campaign_tz = NULL;
    if (explicit_tz && (rc = quiet_zone_valid(explicit_tz)) < 0)
        return rc;
    if (campaign_tz && (rc = quiet_zone_valid(campaign_tz)) < 0)
        return rc;
    if (region && strlen(region) == 2) {
        for (int i = 0; i < 2; i++) {
            char c = region[i];
            out->region[i] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
        }
        if (out->region[0] < 'A' || out->region[0] > 'Z' || out->region[1] < 'A' || out->region[1] > 'Z')
            out->region[0] = out->region[1] = '\0';
    }

    if (!out->region[0] || strcmp(out->region, "US") == 0 || strcmp(out->region, "CA") == 0) {
        sub = find_subdiv(out->region, geo_desc);
        if (sub) {
            memcpy(out->region, sub->country, 3);
            memcpy(out->subdivision, sub->code, 3);
        }
    }

    if (explicit_tz) {
        const char *z[] = {explicit_tz, NULL};
        set_zones(out, z, QUIET_SRC_EXPLICIT);
        return 0;
    }
    if (sub) {
        set_zones(out, sub->zones, QUIET_SRC_STATE);
        return 0;
    }
    if (out->region[0] && !campaign_tz &&
        (strcmp(out->region, "US") == 0 || strcmp(out->region, "CA") == 0)) {
        set_zones(out, subdiv_by_code(out->region, "*")->zones, QUIET_SRC_COUNTRY);
        return 0;
    }
    if (out->region[0] && strcmp(out->region, "US") != 0 && strcmp(out->region, "CA") != 0) {
        for (size_t i = 0; i < quiet_countries_len; i++) {
            if (strcmp(quiet_countries[i].cc, out->region) == 0) {
                const char *z[] = {quiet_countries[i].zone, NULL};
                set_zones(out, z, QUIET_SRC_COUNTRY);
                return 0;
            }
        }
    }
    if (campaign_tz) {
        const char *z[] = {campaign_tz, NULL};
        set_zones(out, z, QUIET_SRC_CAMPAIGN);
        return 0;
    }
    return QUIET_ENOZONE;
}

static int parse_hhmm(const char *s, const char **end, int *min)
{
    int h = 0, m = 0, digits = 0;

    while (*s >= '0' && *s <= '9' && digits < 2) {
        h = h * 10 + (*s++ - '0');
        digits++;
    }
    if (digits == 0 || *s != ':')
        return QUIET_EINVAL;
    s++;
    if (!(s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9'))
        return QUIET_EINVAL;
    m = (s[0] - '0') * 10 + (s[1] - '0');
    if (m > 59 || h > 24 || (h == 24 && m != 0))
        return QUIET_EINVAL;
    *end = s + 2;
    *min = h * 60 + m;
    return 0;
}

int quiet_policy_parse(const char *s, quiet_policy_t *out)
{
    const char *p;
    int a, b;

    if (!s || !out || parse_hhmm(s, &p, &a) < 0 || *p != '-' || parse_hhmm(p + 1, &p, &b) < 0 || *p != '\0' ||
        a >= b)
        return QUIET_EINVAL;
    out->start_min = a;
    out->end_min = b;
    return 0;
}

int quiet_local_time(const char *zone, int64_t utc, quiet_local_t *out)
{
    quiet_tz_t *tz = NULL;
    int rc;

    if (!out || utc < MIN_UTC || utc > MAX_UTC)
        return QUIET_EINVAL;
    rc = quiet_tz_load(zone, &tz);
    if (rc < 0)
        return rc;
    local_at(tz, utc, out);
    quiet_tz_free(tz);
    return 0;
}

const char *quiet_source_name(quiet_source_t src)
{
    switch (src) {
    case QUIET_SRC_EXPLICIT:
        return "explicit";
    case QUIET_SRC_STATE:
        return "number-state";
    case QUIET_SRC_COUNTRY:
        return "country";
    case QUIET_SRC_CAMPAIGN:
        return "campaign";
    case QUIET_SRC_NONE:
        break;
    }
    return "none";
}

const char *quiet_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case QUIET_EINVAL:
        return "invalid argument";
    case QUIET_EZONE:
        return "unknown time zone";
    case QUIET_ENOZONE:
        return "no time zone known for the recipient";
    case QUIET_ENOWINDOW:
        return "no sending window opens within the horizon";
    }
    return "unknown error";
}
