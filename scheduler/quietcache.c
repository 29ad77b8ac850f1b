/*
 * A cache in front of compliance/quiet.h for the dispatcher. quiet_check() reads
 * tzdata files on every call and phone_geocode() walks libphonenumber's geocoder;
 * at thousands of messages a second both would dominate. Zones are cached per
 * (explicit zone, number prefix, campaign zone) — the prefix is "+1" and the area
 * code for NANP numbers, else the country code, which is what decides the zone
 * when no explicit zone is known — and decisions per (zones, window, minute).
 * Fixed-size tables, overwritten on collision: memory stays bounded.
 */
#include "common/xalloc.h"
#include "compliance/phone.h"
#include "scheduler/sched_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZONE_SLOTS 4096
#define DECISION_SLOTS 4096
#define KEY_MAX 160

typedef struct zone_slot {
    char key[KEY_MAX];
    int rc;
    quiet_zones_t zones;
} zone_slot_t;

typedef struct decision_slot {
    char key[KEY_MAX + 32];
    int64_t minute;
    int allowed;
    int64_t next_open;
    int64_t window_end; /* absolute UTC: the earliest window end among the zones */
} decision_slot_t;

struct quiet_cache {
    zone_slot_t *zones;
    decision_slot_t *decisions;
};

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

quiet_cache_t *quiet_cache_new(void)
{
    quiet_cache_t *c = xcalloc(1, sizeof(*c));
    c->zones = xcalloc(ZONE_SLOTS, sizeof(*c->zones));
    c->decisions = xcalloc(DECISION_SLOTS, sizeof(*c->decisions));
    return c;
}

void quiet_cache_free(quiet_cache_t *c)
{
    if (!c)
        return;
    free(c->zones);
    free(c->decisions);
    free(c);
}

static const zone_slot_t *zones_for(quiet_cache_t *c, const char *to, const char *tz, const char *campaign_tz)
{
    char key[KEY_MAX], prefix[8];
    zone_slot_t *z;

    /* NANP: "+1" + area code decides the state; elsewhere the country code decides. */
    if (strncmp(to, "+1", 2) == 0)
        snprintf(prefix, sizeof(prefix), "%.5s", to);
    else
        snprintf(prefix, sizeof(prefix), "%.4s", to);
    snprintf(key, sizeof(key), "%s|%s|%s", tz ? tz : "", tz && *tz ? "" : prefix, campaign_tz ? campaign_tz : "");
    z = &c->zones[hash(key) % ZONE_SLOTS];
    if (strcmp(z->key, key) != 0) {
        phone_result_t pr;
        char geo[128] = "";
        const char *region = NULL;
        if (phone_normalize(to, strlen(to), NULL, &pr) == PHONE_OK || pr.region[0])
            region = pr.region;
        if (phone_geocode(to, geo, sizeof(geo)) != 0)
            geo[0] = '\0';
        memset(&z->zones, 0, sizeof(z->zones));
        z->rc = quiet_zones_for(tz && *tz ? tz : NULL, region, geo, campaign_tz && *campaign_tz ? campaign_tz : NULL,
                                &z->zones);
        snprintf(z->key, sizeof(z->key), "%s", key);
    }
    return z;
}

int quiet_cache_check(quiet_cache_t *c, const char *to, const char *tz, const char *campaign_tz, int start_min,
                      int end_min, int64_t now_utc, int64_t *next_open, int64_t *window_left_s)
{
    const zone_slot_t *z = zones_for(c, to, tz, campaign_tz);
    char key[KEY_MAX + 32];
    decision_slot_t *d;
    int64_t minute = now_utc / 60;

    if (z->rc != 0 || z->zones.count == 0)
        return -1;
    snprintf(key, sizeof(key), "%s|%d|%d", z->key, start_min, end_min);
    d = &c->decisions[hash(key) % DECISION_SLOTS];
    if (d->minute != minute || strcmp(d->key, key) != 0) {
        quiet_policy_t pol = {start_min, end_min};
        quiet_decision_t dec;
        int rc = quiet_check(&z->zones, start_min >= 0 && end_min > start_min ? &pol : NULL, minute * 60, &dec);
        if (rc == QUIET_ENOWINDOW) {
            /* The campaign's window never meets the legal one: hold the message, do not send it. */
            *next_open = now_utc + 3600;
            return 0;
        }
        if (rc != 0)
            return -1;
        snprintf(d->key, sizeof(d->key), "%s", key);
        d->minute = minute;
        d->allowed = dec.allowed;
        d->next_open = dec.next_open_utc;
        d->window_end = minute * 60 + 86400;
        for (int i = 0; dec.allowed && i < dec.count; i++) {
            const quiet_zone_state_t *zs = &dec.zone[i];
            int64_t local_s = zs->local.hour * 3600 + zs->local.minute * 60 + zs->local.second;
            int64_t end = minute * 60 + (int64_t)zs->window_end_min * 60 - local_s;
            if (end < d->window_end)
                d->window_end = end;
        }
    }
    if (!d->allowed) {
        *next_open = d->next_open > now_utc ? d->next_open : now_utc + 60;
        return 0;
    }
    *window_left_s = d->window_end - now_utc;
    if (*window_left_s < 60) {
        /* The window closes within the minute: do not start what cannot arrive in time. */
        *next_open = now_utc + 60;
        return 0;
    }
    return 1;
}
