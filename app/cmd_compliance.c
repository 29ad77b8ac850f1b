/*
 * herald compliance: the quiet-hours decision for one number and the keyword
 * classification of one inbound text, from the command line.
 *
 * This is the glue between the pure compliance pieces: the number is normalized and
 * geocoded with compliance/phone, the description picks the zones (compliance/quiet),
 * and the decision is printed as "key: value" lines or, with --json, one JSON object.
 */
#include "app/commands.h"
#include "compliance/keywords.h"
#include "compliance/phone.h"
#include "compliance/quiet.h"
#include "common/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define TEXT_MAX 4096

static const char *const wday_names[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};

static int usage_error(const char *reason)
{
    fprintf(stderr, "herald compliance: %s\n", reason);
    return EXIT_USAGE;
}

static void print_usage(FILE *out)
{
    fprintf(out, "usage: herald compliance window E164 [--region CC] [--tz ZONE] [--campaign-tz ZONE]\n"
                 "                                    [--quiet-hours HH:MM-HH:MM] [--at ISO8601] [--json]\n"
                 "       herald compliance keyword TEXT... [--json]\n"
                 "--at takes e.g. 2026-03-08T07:30:00Z or 2026-03-08T02:30-05:00 (an offset is required);\n"
                 "the default is now, and --region defaults to US.\n");
}

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

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

/*
 * Parses "YYYY-MM-DDTHH:MM[:SS[.fff]]" followed by "Z" or "+HH:MM" / "-HHMM"; a space may
 * stand for the "T". A time without an offset is refused rather than guessed.
 */
static int parse_iso8601(const char *s, int64_t *out)
{
    int y, mo, d, h, mi, se = 0, oh = 0, om = 0, sign = 0;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (digits(&s, 4, &y) < 0 || *s++ != '-' || digits(&s, 2, &mo) < 0 || *s++ != '-' ||
        digits(&s, 2, &d) < 0)
        return -1;
    if (*s != 'T' && *s != 't' && *s != ' ')
        return -1;
    s++;
    if (digits(&s, 2, &h) < 0 || *s++ != ':' || digits(&s, 2, &mi) < 0)
        return -1;
    if (*s == ':') {
        s++;
        if (digits(&s, 2, &se) < 0)
            return -1;
        if (*s == '.' || *s == ',') {
            s++;
            if (*s < '0' || *s > '9')
                return -1;
            while (*s >= '0' && *s <= '9')
                s++;
        }
    }
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        sign = *s++ == '-' ? -1 : 1;
        if (digits(&s, 2, &oh) < 0)
            return -1;
        if (*s == ':')
            s++;
        if (digits(&s, 2, &om) < 0)
            return -1;
    } else {
        return -1;
    }
    if (*s != '\0' || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 60 ||
        oh > 23 || om > 59)
        return -1;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return -1;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - sign * (oh * 3600 + om * 60);
    return 0;
}

static void format_utc(int64_t t, char *out, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm)) {
        snprintf(out, n, "?");
        return;
    }
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void format_local(const quiet_local_t *l, char *out, size_t n)
{
    int off = l->utc_offset_s < 0 ? -l->utc_offset_s : l->utc_offset_s;
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", l->year, l->month, l->day, l->hour,
             l->minute, l->second, l->utc_offset_s < 0 ? '-' : '+', off / 3600, off / 60 % 60);
}

static void format_window(int start, int end, char *out, size_t n)
{
    if (start >= end)
        snprintf(out, n, "closed");
    else
        snprintf(out, n, "%02d:%02d-%02d:%02d", start / 60, start % 60, end / 60, end % 60);
}

/* Appends s as a JSON string literal; returns 0 or BUF_ETOOBIG. */
static int json_str(buf_t *b, const char *s)
{
    int rc = buf_puts(b, "\"");
    for (; s && *s && rc == 0; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            rc = buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            rc = buf_printf(b, "\\u%04x", c);
        else
            rc = buf_append(b, s, 1);
    }
    if (rc == 0)
        rc = buf_puts(b, "\"");
    return rc;
}

static int json_kv(buf_t *b, const char *key, const char *val, int comma)
{
    int rc = buf_printf(b, "%s\"%s\":", comma ? "," : "", key);
    if (rc == 0) {
        if (val)
            rc = json_str(b, val);
        else
            rc = buf_puts(b, "null");
    }
    return rc;
}

static const char *zone_reason(const quiet_zones_t *z, const char *geo, char *out, size_t n)
{
    switch (z->source) {
    case QUIET_SRC_EXPLICIT:
        snprintf(out, n, "given with --tz");
        break;
    case QUIET_SRC_STATE:
        snprintf(out, n, "the number's %s %s (geocoder: %s)",
                 strcmp(z->region, "CA") == 0 ? "province" : "state", z->subdivision, geo);
        break;
    case QUIET_SRC_COUNTRY:
        snprintf(out, n, "%s",
                 z->count > 1 ? "the number's country, state unknown: every mainland zone"
                              : "the number's country, its primary zone");
        break;
    case QUIET_SRC_CAMPAIGN:
        snprintf(out, n, "nothing known about the number's zone: the campaign's");
        break;
    case QUIET_SRC_NONE:
        snprintf(out, n, "none");
        break;
    }
    return out;
}

static int print_window(const phone_result_t *pr, const char *geo, const quiet_zones_t *zones,
                        const quiet_policy_t *policy, int64_t at, const quiet_decision_t *dec, int json)
{
    char ts[64], reason[160], win[32], pol[32];
    const char *dz = zones->zone[dec->deciding];
    buf_t b;
    int rc = 0;

    format_window(policy ? policy->start_min : 0, policy ? policy->end_min : 0, pol, sizeof(pol));
    zone_reason(zones, geo, reason, sizeof(reason));
    if (!json) {
        printf("number: %s\nregion: %s\ngeocoder: %s\n", pr->e164, pr->region[0] ? pr->region : "-",
               geo[0] ? geo : "-");
        printf("zone_source: %s\nzone_reason: %s\n", quiet_source_name(zones->source), reason);
        printf("subdivision: %s\nrule: %s\n", zones->subdivision[0] ? zones->subdivision : "-", dec->rule);
        printf("campaign_window: %s\n", policy ? pol : "none");
        format_utc(at, ts, sizeof(ts));
        printf("at_utc: %s\n", ts);
        for (int i = 0; i < dec->count; i++) {
            const quiet_zone_state_t *zs = &dec->zone[i];
            format_local(&zs->local, ts, sizeof(ts));
            format_window(zs->window_start_min, zs->window_end_min, win, sizeof(win));
            printf("local_time: %s %s %s %s window %s\n", zones->zone[i], ts, wday_names[zs->local.wday % 7],
                   zs->allowed ? "open" : "closed", win);
        }
        printf("status: %s\n", dec->allowed ? "allowed" : "deferred");
        printf("deciding_zone: %s\n", dz);
        format_utc(dec->next_open_utc, ts, sizeof(ts));
        printf("next_open_utc: %s\n", ts);
        format_local(&dec->next_local, ts, sizeof(ts));
        printf("next_open_local: %s %s\n", ts, dz);
        return 0;
    }
    buf_init(&b, 64 * 1024);
    rc |= buf_puts(&b, "{");
    rc |= json_kv(&b, "number", pr->e164, 0);
    rc |= json_kv(&b, "region", pr->region[0] ? pr->region : NULL, 1);
    rc |= json_kv(&b, "geocoder", geo[0] ? geo : NULL, 1);
    rc |= json_kv(&b, "zone_source", quiet_source_name(zones->source), 1);
    rc |= json_kv(&b, "zone_reason", reason, 1);
    rc |= json_kv(&b, "subdivision", zones->subdivision[0] ? zones->subdivision : NULL, 1);
    rc |= json_kv(&b, "rule", dec->rule, 1);
    rc |= json_kv(&b, "campaign_window", policy ? pol : NULL, 1);
    format_utc(at, ts, sizeof(ts));
    rc |= json_kv(&b, "at_utc", ts, 1);
    rc |= buf_puts(&b, ",\"zones\":[");
    for (int i = 0; i < dec->count; i++) {
        const quiet_zone_state_t *zs = &dec->zone[i];
        rc |= buf_puts(&b, i ? ",{" : "{");
        rc |= json_kv(&b, "zone", zones->zone[i], 0);
        format_local(&zs->local, ts, sizeof(ts));
        rc |= json_kv(&b, "local_time", ts, 1);
        rc |= json_kv(&b, "weekday", wday_names[zs->local.wday % 7], 1);
        rc |= buf_printf(&b, ",\"open\":%s", zs->allowed ? "true" : "false");
        format_window(zs->window_start_min, zs->window_end_min, win, sizeof(win));
        rc |= json_kv(&b, "window", win, 1);
        rc |= buf_puts(&b, "}");
    }
    rc |= buf_printf(&b, "],\"allowed\":%s", dec->allowed ? "true" : "false");
    rc |= json_kv(&b, "status", dec->allowed ? "allowed" : "deferred", 1);
    rc |= json_kv(&b, "deciding_zone", dz, 1);
    format_utc(dec->next_open_utc, ts, sizeof(ts));
    rc |= json_kv(&b, "next_open_utc", ts, 1);
    format_local(&dec->next_local, ts, sizeof(ts));
    rc |= json_kv(&b, "next_open_local", ts, 1);
    rc |= buf_puts(&b, "}");
    if (rc != 0) {
        buf_close(&b);
        fprintf(stderr, "herald compliance: output too large\n");
        return 1;
    }
    printf("%s\n", buf_str(&b));
    buf_close(&b);
    return 0;
}

/* Takes the value of "--name VALUE" or "--name=VALUE" at argv[*i]; NULL when argv[*i] is not --name. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, int *missing)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

static int cmd_window(int argc, char **argv)
{
    const char *number = NULL, *region = "US", *tz = NULL, *ctz = NULL, *hours = NULL, *at_s = NULL, *v;
    quiet_policy_t policy;
    quiet_zones_t zones;
    quiet_decision_t dec;
    phone_result_t pr;
    char geo[256] = "", msg[160];
    int64_t at;
    int json = 0, rc;

    for (int i = 1; i < argc; i++) {
        int missing = 0;
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if ((v = opt_value(argc, argv, &i, "--region", &missing)))
            region = v;
        else if ((v = opt_value(argc, argv, &i, "--tz", &missing)))
            tz = v;
        else if ((v = opt_value(argc, argv, &i, "--campaign-tz", &missing)))
            ctz = v;
        else if ((v = opt_value(argc, argv, &i, "--quiet-hours", &missing)))
            hours = v;
        else if ((v = opt_value(argc, argv, &i, "--at", &missing)))
            at_s = v;
        else if (missing) {
            snprintf(msg, sizeof(msg), "window: %s needs a value", argv[i]);
            return usage_error(msg);
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            snprintf(msg, sizeof(msg), "window: unknown option '%.60s'", argv[i]);
            return usage_error(msg);
        } else if (number) {
            return usage_error("window: only one number, please");
        } else {
            number = argv[i];
        }
    }
    if (!number)
        return usage_error("window: missing E164 number");
    if (hours && quiet_policy_parse(hours, &policy) < 0)
        return usage_error("window: --quiet-hours wants HH:MM-HH:MM with start before end");
    if (at_s) {
        if (parse_iso8601(at_s, &at) < 0)
            return usage_error("window: --at wants ISO 8601 with Z or an offset, e.g. 2026-03-08T07:30:00Z");
    } else {
        at = (int64_t)time(NULL);
    }
    if (!phone_region_known(region)) {
        snprintf(msg, sizeof(msg), "window: unknown region '%.20s'", region);
        return usage_error(msg);
    }
    if (tz && quiet_zone_valid(tz) < 0) {
        snprintf(msg, sizeof(msg), "window: --tz: unknown time zone '%.64s'", tz);
        return usage_error(msg);
    }
    if (ctz && quiet_zone_valid(ctz) < 0) {
        snprintf(msg, sizeof(msg), "window: --campaign-tz: unknown time zone '%.64s'", ctz);
        return usage_error(msg);
    }

    rc = phone_normalize(number, strlen(number), region, &pr);
    if (rc != PHONE_OK) {
        fprintf(stderr, "herald compliance: window: %.40s: %s\n", number, phone_reason(rc));
        return 1;
    }
    /* No description (toll-free, some ranges) is not an error: the zone falls back. */
    if (phone_geocode(pr.e164, geo, sizeof(geo)) != 0)
        geo[0] = '\0';
    rc = quiet_zones_for(tz, pr.region, geo, ctz, &zones);
    if (rc == 0)
        rc = quiet_check(&zones, hours ? &policy : NULL, at, &dec);
    if (rc < 0) {
        fprintf(stderr, "herald compliance: window: %s\n", quiet_strerror(rc));
        return 1;
    }
    return print_window(&pr, geo, &zones, hours ? &policy : NULL, at, &dec, json);
}

static int cmd_keyword(int argc, char **argv)
{
    buf_t text;
    kw_result_t r;
    int json = 0, words = 0, rc = 0, opts = 1;

    buf_init(&text, TEXT_MAX);
    for (int i = 1; i < argc; i++) {
        if (opts && strcmp(argv[i], "--json") == 0) {
            json = 1;
            continue;
        }
        if (opts && strcmp(argv[i], "--") == 0) {
            opts = 0;
            continue;
        }
        if (words++ > 0)
            rc |= buf_puts(&text, " ");
        rc |= buf_puts(&text, argv[i]);
    }
    if (rc != 0) {
        buf_close(&text);
        return usage_error("keyword: TEXT is longer than 4096 bytes");
    }
    if (words == 0) {
        buf_close(&text);
        return usage_error("keyword: missing TEXT");
    }
    keywords_classify(buf_str(&text), text.len, &r);
    buf_close(&text);
    if (json) {
        printf("{\"class\":\"%s\",\"keyword\":", keywords_class_name(r.cls));
        if (r.keyword[0])
            printf("\"%s\"", r.keyword);
        else
            printf("null");
        printf(",\"revocation\":%s,\"rule\":\"%s\"}\n", r.revocation ? "true" : "false", r.rule);
    } else {
        printf("class: %s\nkeyword: %s\nrevocation: %s\nrule: %s\n", keywords_class_name(r.cls),
               r.keyword[0] ? r.keyword : "-", r.revocation ? "yes" : "no", r.rule);
    }
    return 0;
}

int cmd_compliance(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "window") == 0)
        return cmd_window(argc - 1, argv + 1);
    if (strcmp(argv[1], "keyword") == 0)
        return cmd_keyword(argc - 1, argv + 1);
    return usage_error("unknown subcommand (window, keyword)");
}
