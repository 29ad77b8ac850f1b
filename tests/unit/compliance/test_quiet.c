/*
 * Unit tests for compliance/quiet: the table of cases in tests/data/quiet_cases.tsv
 * (zone derivation and window decisions, in the manner of pgbouncer's hba_test), plus
 * the window parser and a check that every zone in the built-in tables is known to ICU.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "compliance/quiet.h"
#include "compliance/quiet_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 11

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Parses "YYYY-MM-DDTHH:MM:SSZ". */
static int parse_utc(const char *s, int64_t *out)
{
    int y, mo, d, h, mi, se;
    char z;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &se, &z) != 7 || z != 'Z')
        return -1;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    return 0;
}

static void format_utc(int64_t t, char *out, size_t n)
{
    int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400, sec = t - days * 86400;
    /* civil_from_days */
    int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097, doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365, y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1), m = (int)(mp < 10 ? mp + 3 : mp - 9);
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02dZ", (int)(y + (m <= 2)), m, d, (int)(sec / 3600),
             (int)(sec / 60 % 60), (int)(sec % 60));
}

static const char *opt(const char *f)
{
    return strcmp(f, "-") == 0 ? NULL : f;
}

static int code_of(const char *name)
{
    if (strcmp(name, "EZONE") == 0)
        return QUIET_EZONE;
    if (strcmp(name, "ENOZONE") == 0)
        return QUIET_ENOZONE;
    if (strcmp(name, "ENOWINDOW") == 0)
        return QUIET_ENOWINDOW;
    if (strcmp(name, "EINVAL") == 0)
        return QUIET_EINVAL;
    return 0;
}

/* Runs one case; returns 0 or prints why it failed and returns -1. */
static int run_case(char **f, int lineno)
{
    quiet_zones_t zones;
    quiet_policy_t pol, *ppol = NULL;
    quiet_decision_t dec;
    int64_t at, next;
    int rc, want_rc = code_of(f[7]);
    char got[32], zl[QUIET_MAX_ZONES * QUIET_TZ_MAX];

    if (parse_utc(f[6], &at) < 0) {
        fprintf(stderr, "line %d (%s): bad at_utc '%s'\n", lineno, f[0], f[6]);
        return -1;
    }
    if (opt(f[5])) {
        if (quiet_policy_parse(f[5], &pol) < 0) {
            fprintf(stderr, "line %d (%s): bad window '%s'\n", lineno, f[0], f[5]);
            return -1;
        }
        ppol = &pol;
    }
    rc = quiet_zones_for(opt(f[1]), opt(f[2]), opt(f[3]), opt(f[4]), &zones);
    if (rc == 0)
        rc = quiet_check(&zones, ppol, at, &dec);
    if (rc != want_rc) {
        fprintf(stderr, "line %d (%s): rc %d (%s), want %s\n", lineno, f[0], rc, quiet_strerror(rc), f[7]);
        return -1;
    }
    if (rc < 0)
        return 0;
    if (dec.allowed != (strcmp(f[7], "allowed") == 0)) {
        format_utc(dec.next_open_utc, got, sizeof(got));
        fprintf(stderr, "line %d (%s): %s (next %s), want %s\n", lineno, f[0],
                dec.allowed ? "allowed" : "deferred", got, f[7]);
        return -1;
    }
    next = at;
    if (opt(f[8]) && parse_utc(f[8], &next) < 0) {
        fprintf(stderr, "line %d (%s): bad next_open_utc '%s'\n", lineno, f[0], f[8]);
        return -1;
    }
    if (dec.next_open_utc != next) {
        format_utc(dec.next_open_utc, got, sizeof(got));
        fprintf(stderr, "line %d (%s): next open %s, want %s\n", lineno, f[0], got, f[8]);
        return -1;
    }
    if (opt(f[9]) && strcmp(quiet_source_name(zones.source), f[9]) != 0) {
        fprintf(stderr, "line %d (%s): source %s, want %s\n", lineno, f[0], quiet_source_name(zones.source),
                f[9]);
        return -1;
    }
    zl[0] = '\0';
    for (int i = 0; i < zones.count; i++) {
        if (i)
            strcat(zl, ",");
        strcat(zl, zones.zone[i]);
    }
    if (opt(f[10]) && strcmp(zl, f[10]) != 0) {
        fprintf(stderr, "line %d (%s): zones %s, want %s\n", lineno, f[0], zl, f[10]);
        return -1;
    }
    return 0;
}

static void test_quiet_table(void **state)
{
    char path[1024], line[1024];
    FILE *fp;
    int lineno = 0, cases = 0, failed = 0;
    (void)state;

    snprintf(path, sizeof(path), "%s/quiet_cases.tsv", HERALD_TEST_DATA_DIR);
    fp = fopen(path, "r");
    assert_non_null(fp);
    while (fgets(line, sizeof(line), fp)) {
        char *f[MAX_FIELDS], *p = line;
        int nf = 0;
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        while (nf < MAX_FIELDS) {
            f[nf++] = p;
            p = strchr(p, '\t');
            if (!p)
                break;
            *p++ = '\0';
        }
        if (nf != MAX_FIELDS || p) {
            fprintf(stderr, "line %d: %d fields, want %d\n", lineno, nf, MAX_FIELDS);
            failed++;
            continue;
        }
        cases++;
        if (run_case(f, lineno) < 0)
            failed++;
    }
    fclose(fp);
    printf("quiet_cases.tsv: %d cases, %d failed\n", cases, failed);
    assert_true(cases >= 40);
    assert_int_equal(failed, 0);
}

static void test_policy_parse(void **state)
{
    quiet_policy_t p;
    (void)state;
    assert_int_equal(quiet_policy_parse("10:00-18:00", &p), 0);
    assert_int_equal(p.start_min, 600);
    assert_int_equal(p.end_min, 1080);
    assert_int_equal(quiet_policy_parse("8:30-24:00", &p), 0);
    assert_int_equal(p.start_min, 510);
    assert_int_equal(p.end_min, 1440);
    assert_int_equal(quiet_policy_parse("18:00-10:00", &p), QUIET_EINVAL);
    assert_int_equal(quiet_policy_parse("10:00-10:00", &p), QUIET_EINVAL);
    assert_int_equal(quiet_policy_parse("10:60-11:00", &p), QUIET_EINVAL);
    assert_int_equal(quiet_policy_parse("25:00-26:00", &p), QUIET_EINVAL);
    assert_int_equal(quiet_policy_parse("10:00-18:00x", &p), QUIET_EINVAL);
    assert_int_equal(quiet_policy_parse("10-18", &p), QUIET_EINVAL);
    assert_int_equal(quiet_policy_parse("", &p), QUIET_EINVAL);
    assert_int_equal(quiet_policy_parse(NULL, &p), QUIET_EINVAL);
}

static void test_tables_known_to_tzdata(void **state)
{
    int bad = 0;
    (void)state;
    for (size_t i = 0; i < quiet_subdivs_len; i++)
        for (int k = 0; k < QUIET_MAX_ZONES && quiet_subdivs[i].zones[k]; k++)
            if (quiet_zone_valid(quiet_subdivs[i].zones[k]) != 0) {
                fprintf(stderr, "subdivision %s: unknown zone %s\n", quiet_subdivs[i].code,
                        quiet_subdivs[i].zones[k]);
                bad++;
            }
    for (size_t i = 0; i < quiet_countries_len; i++)
        if (quiet_zone_valid(quiet_countries[i].zone) != 0) {
            fprintf(stderr, "country %s: unknown zone %s\n", quiet_countries[i].cc, quiet_countries[i].zone);
            bad++;
        }
    assert_int_equal(bad, 0);
    assert_true(quiet_countries_len >= 240);
}

static void test_bad_arguments(void **state)
{
    quiet_zones_t z;
    quiet_decision_t d;
    quiet_local_t l;
    quiet_policy_t bad = {600, 500};
    (void)state;
    assert_int_equal(quiet_zones_for(NULL, NULL, NULL, NULL, NULL), QUIET_EINVAL);
    assert_int_equal(quiet_zones_for("America/New_York", NULL, NULL, NULL, &z), 0);
    assert_int_equal(quiet_check(&z, NULL, INT64_MAX, &d), QUIET_EINVAL);
    assert_int_equal(quiet_check(&z, &bad, 0, &d), QUIET_EINVAL);
    assert_int_equal(quiet_check(NULL, NULL, 0, &d), QUIET_EINVAL);
    z.count = 0;
    assert_int_equal(quiet_check(&z, NULL, 0, &d), QUIET_EINVAL);
    assert_int_equal(quiet_zone_valid("Etc/Unknown"), QUIET_EZONE);
    assert_int_equal(quiet_zone_valid("GMT+05:00"), QUIET_EZONE);
    assert_int_equal(quiet_zone_valid(""), QUIET_EZONE);
    assert_int_equal(quiet_zone_valid(NULL), QUIET_EINVAL);
    {
        char longname[200];
        memset(longname, 'A', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        assert_int_equal(quiet_zone_valid(longname), QUIET_EZONE);
    }
    assert_int_equal(quiet_local_time("Asia/Kathmandu", 0, &l), 0);
    assert_int_equal(l.utc_offset_s, 5 * 3600 + 30 * 60); /* Nepal was +05:30 until 1986 */
    assert_int_equal(l.year, 1970);
    assert_string_equal(quiet_strerror(QUIET_EZONE), "unknown time zone");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quiet_table),
        cmocka_unit_test(test_policy_parse),
        cmocka_unit_test(test_tables_known_to_tzdata),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
