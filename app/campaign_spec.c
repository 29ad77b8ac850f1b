/*
 * One validation and one INSERT for new campaigns, shared by `herald campaign
 * create` (app/cmd_campaign.c) and POST /broadcast/campaigns (app/api_broadcast.c),
 * so the command line and the API can never disagree on what a campaign may be.
 * The checks are those the database cannot make well (template syntax, zone and
 * region names, opt-out language) plus the shapes its CHECK constraints enforce, so
 * a bad value is named here rather than surfacing as a constraint violation.
 */
#include "app/campaign_spec.h"

#include "common/utf8.h"
#include "compliance/footer.h"
#include "compliance/phone.h"
#include "ingest/ingest.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_CHARS 200

/* The campaign as JSON, for a row of campaigns aliased c. Recipients not yet moved into
 * the outbox (migration 007) count as queued, or canceled once the campaign is. */
#define CAMPAIGN_JSON                                                                                        \
    "json_build_object('id', c.id, 'name', c.name, 'status', c.status, 'body', c.body,"                      \
    " 'from', c.from_number, 'messaging_service_sid', c.messaging_service_sid, 'rate_mps', c.rate_mps,"      \
    " 'start_at', c.start_at, 'cron', c.cron, 'timezone', c.timezone, 'region', c.region,"                   \
    " 'quiet_hours', CASE WHEN c.quiet_start_min IS NULL THEN NULL ELSE"                                     \
    "   lpad((c.quiet_start_min / 60)::text, 2, '0') || ':' || lpad((c.quiet_start_min % 60)::text, 2, '0')" \
    "   || '-' || lpad((c.quiet_end_min / 60)::text, 2, '0') || ':' || lpad((c.quiet_end_min % 60)::text, "  \
    "2, '0')"                                                                                                \
    "   END,"                                                                                                \
    " 'footer_policy', c.footer_policy, 'footer_text', c.footer_text, 'merge_defaults', c.merge_defaults,"   \
    " 'price_per_segment', c.price_per_segment, 'created_at', c.created_at,"                                 \
    " 'counts', coalesce((SELECT json_object_agg(state, n) FROM (SELECT state, sum(n)::bigint AS n FROM ("  \
    "   SELECT state, count(*) AS n FROM outbox o WHERE o.campaign_id = c.id GROUP BY state"                 \
    "   UNION ALL SELECT CASE WHEN c.status = 'canceled' THEN 'canceled' ELSE 'queued' END,"                \
    "   herald_unfilled(c.id) WHERE c.cron IS NULL AND herald_unfilled(c.id) > 0) u GROUP BY state) s),"    \
    "   '{}'))::text"

#define CAMPAIGN_INSERT                                                                                      \
    "INSERT INTO campaigns AS c (org_id, name, body, from_number, messaging_service_sid, region, rate_mps,"  \
    " start_at, cron, timezone, quiet_start_min, quiet_end_min, footer_policy, footer_text, merge_defaults," \
    " price_per_segment) VALUES ($1::bigint, $2, $3, $4, $5, $6, $7::numeric, $8::timestamptz, $9, $10,"     \
    " $11::int, $12::int, $13, $14, $15::jsonb, $16::numeric)"

const char CAMPAIGN_INSERT_SQL[] = CAMPAIGN_INSERT " RETURNING c.id";
const char CAMPAIGN_INSERT_JSON_SQL[] = CAMPAIGN_INSERT " RETURNING " CAMPAIGN_JSON;
const char CAMPAIGN_GET_SQL[] = "SELECT " CAMPAIGN_JSON " FROM campaigns c WHERE c.org_id = $1 AND c.id = $2";

__attribute__((format(printf, 3, 4))) static int fault(campaign_spec_error_t *err, campaign_field_t f,
                                                       const char *fmt, ...)
{
    va_list ap;

    err->field = f;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}
#define FAULT(f, ...) fault(err, (f), __VA_ARGS__)

/* Code points in s, or -1 when s is not UTF-8 or holds control characters. */
static long text_chars(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    long n = 0;

    while (left > 0) {
        size_t k = utf8_seq(p, left);
        if (k == 0 || (k == 1 && *p < 0x20))
            return -1;
        p += k;
        left -= k;
        n++;
    }
    return n;
}

/* A plain decimal number (no hex, inf or nan, which strtod would take). */
static int decimal(const char *s, double *out)
{
    char *end;
    double v;

    if (!*s || strspn(s, "0123456789.eE+-") != strlen(s))
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (*end || end == s || errno)
        return -1;
    *out = v;
    return 0;
}

static int num(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/*
 * ISO 8601 as PostgreSQL reads it unambiguously: YYYY-MM-DD, optionally followed by
 * T (or a space) HH:MM[:SS[.fraction]] and Z or +HH[:MM] / -HH[:MM]. A time without a
 * zone is read in the database session's zone.
 */
static int iso8601_ok(const char *s)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec;
    const char *p;

    if (strlen(s) < 10 || num(s, 4, &y) || s[4] != '-' || num(s + 5, 2, &mo) || s[7] != '-' ||
        num(s + 8, 2, &d))
        return 0;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1])
        return 0;
    if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        return 0;
    p = s + 10;
    if (!*p)
        return 1;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return 0;
    p++;
    if (strlen(p) < 5 || num(p, 2, &h) || p[2] != ':' || num(p + 3, 2, &mi) || h > 23 || mi > 59)
        return 0;
    p += 5;
    if (*p == ':') {
        if (strlen(p) < 3 || num(p + 1, 2, &sec) || sec > 59)
            return 0;
        p += 3;
        if (*p == '.' || *p == ',') {
            p++;
            if (!isdigit((unsigned char)*p))
                return 0;
            while (isdigit((unsigned char)*p))
                p++;
        }
    }
    if (!*p)
        return 1;
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
        return 1;
    if (*p != '+' && *p != '-')
        return 0;
    p++;
    if (strlen(p) < 2 || num(p, 2, &h) || h > 14)
        return 0;
    p += 2;
    if (*p == ':')
        p++;
    if (!*p)
        return p[-1] != ':';
    return strlen(p) == 2 && num(p, 2, &mi) == 0 && mi <= 59;
}

/* A merge-field name as the template accepts it. */
static int field_name_ok(const char *k)
{
    size_t n = strlen(k);
    return n >= 1 && n <= INGEST_MAX_NAME &&
           strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == n;
}

int campaign_spec_check(campaign_spec_t *s, const char *const names[CF_COUNT], campaign_spec_error_t *err)
{
    const char *const *v = s->v;
    ingest_error_t ierr = {0};
    footer_policy_t pol;
    double x;
    long chars;

    memset(err, 0, sizeof(*err));
    chars = v[CF_NAME] ? text_chars(v[CF_NAME]) : -1;
    if (chars < 1 || chars > NAME_MAX_CHARS)
        return FAULT(CF_NAME, "%s is required (1 to %d characters)", names[CF_NAME], NAME_MAX_CHARS);
    if (!v[CF_BODY])
        return FAULT(CF_BODY, "%s is required", names[CF_BODY]);
    if (ingest_template_check(v[CF_BODY], &ierr) != 0)
        return FAULT(CF_BODY, "%s: %s", names[CF_BODY], ierr.reason);
    if ((v[CF_FROM] != NULL) == (v[CF_MG] != NULL))
        return FAULT(v[CF_FROM] ? CF_MG : CF_FROM, "give exactly one sender: %s E164 or %s MG...",
                     names[CF_FROM], names[CF_MG]);
    if (v[CF_FROM] && !ingest_e164_shape(v[CF_FROM]))
        return FAULT(CF_FROM, "%s must be an E.164 number like +14155550100, got '%s'", names[CF_FROM],
                     v[CF_FROM]);
    if (v[CF_MG] && !ingest_mg_sid_shape(v[CF_MG]))
        return FAULT(CF_MG, "%s must be MG followed by 32 lowercase hex digits, got '%s'", names[CF_MG],
                     v[CF_MG]);
    if (v[CF_RATE] && (decimal(v[CF_RATE], &x) != 0 || !(x > 0) || x > 10000))
        return FAULT(CF_RATE, "%s must be a number of messages per second in (0, 10000], got '%s'",
                     names[CF_RATE], v[CF_RATE]);
    if (v[CF_START] && !iso8601_ok(v[CF_START]))
        return FAULT(CF_START, "%s must be an ISO 8601 time like 2030-01-31T09:00:00-05:00, got '%s'",
                     names[CF_START], v[CF_START]);
    if (v[CF_CRON]) {
        if (ingest_cron_check(v[CF_CRON], &ierr) != 0)
            return FAULT(CF_CRON, "%s: %s", names[CF_CRON], ierr.reason);
        if (!v[CF_TZ])
            return FAULT(CF_TZ, "%s needs %s Area/City", names[CF_CRON], names[CF_TZ]);
    }
    if (v[CF_TZ] && (strlen(v[CF_TZ]) > 64 || quiet_zone_valid(v[CF_TZ]) != 0))
        return FAULT(CF_TZ, "%s: unknown time zone '%s'", names[CF_TZ], v[CF_TZ]);
    snprintf(s->region, sizeof(s->region), "US");
    if (v[CF_REGION]) {
        if (strlen(v[CF_REGION]) != 2)
            return FAULT(CF_REGION, "%s must be a two-letter region code, got '%s'", names[CF_REGION],
                         v[CF_REGION]);
        s->region[0] = (char)toupper((unsigned char)v[CF_REGION][0]);
        s->region[1] = (char)toupper((unsigned char)v[CF_REGION][1]);
        if (!phone_region_known(s->region))
            return FAULT(CF_REGION, "%s: unknown region '%s'", names[CF_REGION], v[CF_REGION]);
    }
    if (v[CF_QUIET] && quiet_policy_parse(v[CF_QUIET], &s->quiet) != 0)
        return FAULT(CF_QUIET, "%s must be HH:MM-HH:MM with start before end, got '%s'", names[CF_QUIET],
                     v[CF_QUIET]);
    if (v[CF_FOOTER_POLICY] && footer_policy_parse(v[CF_FOOTER_POLICY], &pol) != 0)
        return FAULT(CF_FOOTER_POLICY, "%s must be first, always or never, got '%s'", names[CF_FOOTER_POLICY],
                     v[CF_FOOTER_POLICY]);
    s->footer_policy = v[CF_FOOTER_POLICY] ? footer_policy_name(pol) : "first";
    if (v[CF_FOOTER]) {
        size_t n = strlen(v[CF_FOOTER]);
        if (n == 0 || n > FOOTER_MAX_TEXT || text_chars(v[CF_FOOTER]) < 0)
            return FAULT(CF_FOOTER, "%s must be 1 to %d bytes of text", names[CF_FOOTER], FOOTER_MAX_TEXT);
        if (!footer_has_optout(v[CF_FOOTER], n, NULL))
            return FAULT(CF_FOOTER, "%s must carry opt-out language, e.g. 'Reply STOP to opt out'; got '%s'",
                         names[CF_FOOTER], v[CF_FOOTER]);
    }
    if (v[CF_PRICE] && (decimal(v[CF_PRICE], &x) != 0 || x < 0 || x > 10))
        return FAULT(CF_PRICE, "%s must be a number from 0 to 10, got '%s'", names[CF_PRICE], v[CF_PRICE]);
    if (s->defaults) {
        const char *k;
        json_t *val;
        if (!json_is_object(s->defaults) || json_object_size(s->defaults) > INGEST_MAX_DEFAULTS)
            return FAULT(CF_DEFAULTS, "%s: at most %d fields, each a name and its text", names[CF_DEFAULTS],
                         INGEST_MAX_DEFAULTS);
        json_object_foreach(s->defaults, k, val)
        {
            if (!field_name_ok(k))
                return FAULT(CF_DEFAULTS, "%s: '%.80s' is not a field name (letters, digits, '_', '-', '.')",
                             names[CF_DEFAULTS], k);
            if (!json_is_string(val) || strlen(json_string_value(val)) != json_string_length(val))
                return FAULT(CF_DEFAULTS, "%s: the value of '%s' must be text", names[CF_DEFAULTS], k);
        }
    }
    return 0;
}

void campaign_insert_init(campaign_insert_t *p, const campaign_spec_t *s, int64_t org_id)
{
    const char *const *v = s->v;

    memset(p, 0, sizeof(*p));
    snprintf(p->org, sizeof(p->org), "%" PRId64, org_id);
    snprintf(p->qs, sizeof(p->qs), "%d", s->quiet.start_min);
    snprintf(p->qe, sizeof(p->qe), "%d", s->quiet.end_min);
    p->defaults_json = s->defaults ? json_dumps(s->defaults, JSON_COMPACT) : NULL;
    p->values[0] = p->org;
    p->values[1] = v[CF_NAME];
    p->values[2] = v[CF_BODY];
    p->values[3] = v[CF_FROM];
    p->values[4] = v[CF_MG];
    p->values[5] = s->region;
    p->values[6] = v[CF_RATE];
    p->values[7] = v[CF_START];
    p->values[8] = v[CF_CRON];
    p->values[9] = v[CF_TZ];
    p->values[10] = v[CF_QUIET] ? p->qs : NULL;
    p->values[11] = v[CF_QUIET] ? p->qe : NULL;
    p->values[12] = s->footer_policy;
    p->values[13] = v[CF_FOOTER];
    p->values[14] = p->defaults_json ? p->defaults_json : "{}";
    p->values[15] = v[CF_PRICE] ? v[CF_PRICE] : "0.0079";
}

void campaign_insert_free(campaign_insert_t *p)
{
    free(p->defaults_json);
    p->defaults_json = NULL;
}
