/*
 * Internals shared by compliance/quiet.c and its data tables (compliance/quiet_tables.c).
 */
#ifndef HERALD_COMPLIANCE_QUIET_INT_H
#define HERALD_COMPLIANCE_QUIET_INT_H
#include "compliance/quiet.h"

#include <stddef.h>
#include <stdint.h>

/* One zone's rules from the system tz database (compliance/quiet_tz.c). */
typedef struct quiet_tz quiet_tz_t;

/*
 * Loads zone name from $TZDIR or /usr/share/zoneinfo into *out (free with quiet_tz_free).
 * Returns 0, QUIET_EZONE for an unknown or unreadable zone, QUIET_EINVAL for NULL.
 */
int quiet_tz_load(const char *name, quiet_tz_t **out);
void quiet_tz_free(quiet_tz_t *tz);
/* Seconds east of UTC in force at utc. */
int32_t quiet_tz_offset(const quiet_tz_t *tz, int64_t utc);
/*
 * The earliest instant whose local time (seconds since the local 1970-01-01) is local;
 * for a wall time skipped by a forward jump, the first instant after the jump.
 */
int64_t quiet_tz_from_local(const quiet_tz_t *tz, int64_t local);
/* Proleptic Gregorian day numbers, 0 = 1970-01-01 (Howard Hinnant's algorithms). */
int64_t quiet_days_from_civil(int64_t y, int m, int d);
void quiet_civil_from_days(int64_t days, int *y, int *m, int *d);

/* A US state, DC, territory or Canadian province and the zones its numbers may be in. */
typedef struct quiet_subdiv {
    const char *country; /* "US" or "CA" */
    const char *code;    /* postal abbreviation, as in "Jacksonville, FL" */
    const char *name;    /* as the geocoder spells it when it gives no city, e.g. "Florida" */
    const char *zones[QUIET_MAX_ZONES];
} quiet_subdiv_t;

/* Another spelling of a subdivision's name ("Washington D.C.", "Québec"). */
typedef struct quiet_alias {
    const char *name;
    const char *country;
    const char *code;
} quiet_alias_t;

typedef struct quiet_country {
    const char *cc;   /* ISO 3166 alpha-2 */
    const char *zone; /* primary (most populous) zone */
} quiet_country_t;

/* A legal sending window: on the days in wdays_mask (bit 0 = Sunday), [start_min, end_min). */
typedef struct quiet_rule {
    const char *country;     /* "" for the default that applies everywhere */
    const char *subdivision; /* "" for a country-wide rule */
    unsigned wdays_mask;
    int start_min;
    int end_min;
    const char *name;
} quiet_rule_t;

extern const quiet_subdiv_t quiet_subdivs[];
extern const size_t quiet_subdivs_len;
extern const quiet_alias_t quiet_aliases[];
extern const size_t quiet_aliases_len;
extern const quiet_country_t quiet_countries[];
extern const size_t quiet_countries_len;
extern const quiet_rule_t quiet_rules[];
extern const size_t quiet_rules_len;

#endif
