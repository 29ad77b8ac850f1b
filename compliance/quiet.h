/*
 * Quiet hours: whether a message may be sent to a recipient now, in the recipient's
 * local time, and when the sending window next opens.
 *
 * Two pure steps:
 *  1. quiet_zones_for() picks the candidate time zones: an explicit IANA zone, else
 *     the zones of the number's US state / Canadian province (from libphonenumber's
 *     geocoder description, e.g. "Jacksonville, FL") or its country's primary zone,
 *     else the campaign's zone. States spanning several zones give several candidates.
 *  2. quiet_check() applies the legal window (TCPA 08:00-21:00, or a stricter state
 *     rule from compliance/quiet_tables.c) intersected with an optional campaign window,
 *     in every candidate zone: the message is allowed only when every zone allows it,
 *     and the next opening is the earliest instant inside all of them.
 * Zone arithmetic reads the system tz database (tzdata, /usr/share/zoneinfo or $TZDIR),
 * so DST changes are whatever the distribution's current tzdata says.
 */
#ifndef HERALD_COMPLIANCE_QUIET_H
#define HERALD_COMPLIANCE_QUIET_H
#include <stdint.h>

#define QUIET_EINVAL (-1)    /* bad argument: NULL, malformed window, time out of range */
#define QUIET_EZONE (-2)     /* an explicit or campaign zone name is not a known IANA zone */
#define QUIET_ENOZONE (-3)   /* nothing to derive a zone from */
#define QUIET_ENOWINDOW (-4) /* no instant inside every window within QUIET_HORIZON_DAYS */

#define QUIET_MAX_ZONES 6
#define QUIET_TZ_MAX 64 /* longest accepted zone name is QUIET_TZ_MAX - 1 bytes */
#define QUIET_HORIZON_DAYS 14

typedef enum quiet_source {
    QUIET_SRC_NONE = 0,
    QUIET_SRC_EXPLICIT, /* the recipient's own time zone (CSV column, contact record) */
    QUIET_SRC_STATE,    /* the number's US state or Canadian province */
    QUIET_SRC_COUNTRY,  /* the number's country, its primary (or, for US/CA, every mainland) zone */
    QUIET_SRC_CAMPAIGN, /* nothing known about the recipient: the campaign's zone */
} quiet_source_t;

typedef struct quiet_zones {
    int count;
    char zone[QUIET_MAX_ZONES][QUIET_TZ_MAX];
    quiet_source_t source;
    char region[3];      /* ISO 3166 alpha-2 of the number, upper case, or "" */
    char subdivision[3]; /* state/province code ("FL", "ON") whose rules apply, or "" */
} quiet_zones_t;

typedef struct quiet_policy {
    /* Campaign window in local minutes after midnight, [start_min, end_min); must not wrap. */
    int start_min;
    int end_min;
} quiet_policy_t;

typedef struct quiet_local {
    int year, month, day; /* month 1-12 */
    int hour, minute, second;
    int wday;         /* 0 = Sunday */
    int utc_offset_s; /* including DST */
} quiet_local_t;

typedef struct quiet_zone_state {
    int allowed;
    quiet_local_t local;  /* at now */
    int window_start_min; /* the window applied on that local day; start == end when closed all day */
    int window_end_min;
    int64_t next_open_utc; /* this zone alone: now when allowed */
} quiet_zone_state_t;

typedef struct quiet_decision {
    int allowed;
    int64_t next_open_utc;    /* now when allowed */
    int deciding;             /* index of the zone that set next_open_utc (0 when allowed) */
    quiet_local_t next_local; /* next_open_utc in the deciding zone */
    const char *rule;         /* static: "federal" or the state rule's name, e.g. "FL" */
    int count;
    quiet_zone_state_t zone[QUIET_MAX_ZONES];
} quiet_decision_t;

/*
 * Picks the candidate zones for a recipient. All arguments but out may be NULL or "".
 * explicit_tz wins; otherwise region (the number's ISO country, e.g. "US") and geo_desc
 * (libphonenumber's English geocoder description, e.g. "Jacksonville, FL", "California")
 * give a state's or a country's zones; for US/CA numbers whose state is unknown the
 * campaign zone is used if given, else every mainland zone of the country; otherwise
 * campaign_tz. The state found from geo_desc is recorded (and its rules apply) even when
 * explicit_tz decides the zone. Returns 0, QUIET_EZONE for an unknown explicit or campaign
 * zone, QUIET_ENOZONE when nothing gives a zone, QUIET_EINVAL when out is NULL.
 */
__attribute__((warn_unused_result)) int quiet_zones_for(const char *explicit_tz, const char *region,
                                                        const char *geo_desc, const char *campaign_tz,
                                                        quiet_zones_t *out);

/*
 * Decides whether now_utc (seconds since the epoch) is inside the sending window in
 * every zone of *zones, and when the common window next opens. policy is the campaign's
 * narrower window, or NULL for the legal default alone. Returns 0 and fills *out, or
 * QUIET_EINVAL, QUIET_EZONE, QUIET_ENOWINDOW (e.g. a campaign window disjoint from the
 * legal one).
 */
__attribute__((warn_unused_result)) int quiet_check(const quiet_zones_t *zones, const quiet_policy_t *policy,
                                                    int64_t now_utc, quiet_decision_t *out);

/*
 * Parses "HH:MM-HH:MM" (24-hour, end may be 24:00) into *out. Returns 0, or QUIET_EINVAL
 * when malformed or when start is not before end.
 */
__attribute__((warn_unused_result)) int quiet_policy_parse(const char *s, quiet_policy_t *out);

/* Returns 0 when name is a known IANA zone (a readable TZif file in the system tz database), else QUIET_EZONE
 * or QUIET_EINVAL. */
__attribute__((warn_unused_result)) int quiet_zone_valid(const char *name);

/* Fills *out with the local time of utc in zone. Returns 0, QUIET_EZONE or QUIET_EINVAL. */
__attribute__((warn_unused_result)) int quiet_local_time(const char *zone, int64_t utc, quiet_local_t *out);

/* Returns "explicit", "number-state", "country", "campaign" or "none" (static strings). */
const char *quiet_source_name(quiet_source_t src);

/* Returns a static description of a QUIET_E* code. */
const char *quiet_strerror(int err);

#endif
