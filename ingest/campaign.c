/*
 * Campaign settings as the upload pipeline sees them: loading them from a row of
 * the campaigns table, checking what `herald campaign create` (and the HTTP create
 * endpoint) is given — template syntax, cron syntax, sender shapes — and estimating
 * when sending would end given the rate and the quiet hours.
 */
#include "ingest/ingest_int.h"
#include "compliance/quiet.h"
#include "compliance/segments.h"
#include "common/xalloc.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

const char INGEST_CAMPAIGN_SQL[] =
    "SELECT id, org_id, body, region, footer_policy, footer_text, merge_defaults::text, "
    "price_per_segment::float8, COALESCE(rate_mps, 0)::float8, timezone, COALESCE(quiet_start_min, -1), "
    "COALESCE(quiet_end_min, -1), COALESCE(extract(epoch FROM start_at), 0)::bigint, status "
    "FROM campaigns WHERE id = $1::bigint AND org_id = $2::bigint";

static const char *col(const PGresult *r, int c)
{
    return PQgetisnull(r, 0, c) ? NULL : PQgetvalue(r, 0, c);
}

int ingest_campaign_from_result(const PGresult *res, ingest_campaign_t *c, ingest_default_t **defaults_out,
                                ingest_error_t *err)
{
    json_t *defs = NULL;
    json_error_t jerr;
    ingest_default_t *d = NULL;
    size_t n = 0;
    int rc = INGEST_EINVAL;

    memset(c, 0, sizeof(*c));
    *defaults_out = NULL;
    if (!res || PQntuples(res) < 1 || PQnfields(res) < 14) {
        snprintf(err->reason, sizeof(err->reason), "no such campaign");
        goto out;
    }
    c->campaign_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    c->org_id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    c->body = PQgetvalue(res, 0, 2);
    c->region = PQgetvalue(res, 0, 3);
    if (footer_policy_parse(PQgetvalue(res, 0, 4), &c->footer_policy) != 0) {
        snprintf(err->reason, sizeof(err->reason), "campaign has an unknown footer policy");
        goto out;
    }
    c->footer_text = col(res, 5);
    c->price_per_segment = strtod(PQgetvalue(res, 0, 7), NULL);
    c->rate_mps = strtod(PQgetvalue(res, 0, 8), NULL);
    c->timezone = col(res, 9);
    c->quiet_start_min = atoi(PQgetvalue(res, 0, 10));
    c->quiet_end_min = atoi(PQgetvalue(res, 0, 11));
    c->start_at = strtoll(PQgetvalue(res, 0, 12), NULL, 10);
    c->status = PQgetvalue(res, 0, 13);
    defs = json_loads(PQgetvalue(res, 0, 6), 0, &jerr);
    if (!json_is_object(defs) || json_object_size(defs) > INGEST_MAX_DEFAULTS) {
        snprintf(err->reason, sizeof(err->reason), "campaign merge_defaults is not a JSON object of at most %d fields",
                 INGEST_MAX_DEFAULTS);
        goto out;
    }
    d = xcalloc(json_object_size(defs) + 1, sizeof(*d));
    {
        const char *k;
        json_t *v;
        json_object_foreach(defs, k, v)
        {
            if (!json_is_string(v))
                continue;
            d[n].name = k;
            d[n].value = json_string_value(v);
            n++;
        }
    }
    rc = 0;
out:
    if (rc == 0) {
        /* Copy out of the JSON tree: its memory goes with json_decref below. */
        for (size_t i = 0; i < n; i++) {
            d[i].name = xstrdup(d[i].name);
            d[i].value = xstrdup(d[i].value);
        }
        c->defaults = d;
        c->n_defaults = n;
        *defaults_out = d;
        d = NULL;
    } else if (err) {
        err->code = rc;
    }
    free(d);
    json_decref(defs);
    return rc;
}

void ingest_defaults_free(ingest_default_t *d, size_t n)
{
    for (size_t i = 0; d && i < n; i++) {
        free((char *)d[i].name);
        free((char *)d[i].value);
    }
    free(d);
}

int ingest_template_check(const char *body, ingest_error_t *err)
{
    ingest_template_t t;
    sms_info_t si;
    size_t len = strlen(body);

    if (len == 0 || !ingest_utf8_ok(body, len) || sms_analyze(body, len, 0, &si) != 0) {
        if (err) {
            err->code = INGEST_ETEMPLATE;
            snprintf(err->reason, sizeof(err->reason), "body must be non-empty UTF-8 text");
        }
        return INGEST_ETEMPLATE;
    }
    if (si.code_points > SMS_MAX_UNITS) {
        if (err) {
            err->code = INGEST_ETEMPLATE;
            snprintf(err->reason, sizeof(err->reason), "body is %zu characters; the limit is %d", si.code_points,
                     SMS_MAX_UNITS);
        }
        return INGEST_ETEMPLATE;
    }
    return ingest_template_compile(&t, body, NULL, NULL, 0, err);
}

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

/* Reads a number or a name at *p; returns -1 when neither. */
static long cron_value(const char **p, int field)
{
    char *end;
    long v;

    if (isdigit((unsigned char)**p)) {
        v = strtol(*p, &end, 10);
        if (end - *p > 4)
            return -1;
        *p = end;
        return v;
    }
    if (field == 3 || field == 4) {
        const char *const *names = field == 3 ? month_names : day_names;
        int n = field == 3 ? 12 : 7;
        for (int i = 0; i < n; i++)
            if (strncasecmp(*p, names[i], 3) == 0) {
                *p += 3;
                return field == 3 ? i + 1 : i;
            }
    }
    return -1;
}

int ingest_cron_check(const char *expr, ingest_error_t *err)
{
    static const char *const fname[5] = {"minute", "hour", "day of month", "month", "day of week"};
    static const int lo[5] = {0, 0, 1, 1, 0}, hi[5] = {59, 23, 31, 12, 7};
    const char *p = expr;
    int field = 0;

    while (*p == ' ' || *p == '\t')
        p++;
    for (field = 0; field < 5 && *p; field++) {
        for (;;) {
            long a, b, step;
            if (*p == '*') {
                p++;
                a = lo[field];
                b = hi[field];
            } else {
                if ((a = cron_value(&p, field)) < 0)
                    goto bad;
                b = a;
                if (*p == '-') {
                    p++;
                    if ((b = cron_value(&p, field)) < 0)
                        goto bad;
                }
                if (a < lo[field] || b > hi[field] || a > b)
                    goto bad;
            }
            if (*p == '/') {
                char *end;
                p++;
                if (!isdigit((unsigned char)*p))
                    goto bad;
                step = strtol(p, &end, 10);
                p = end;
                if (step < 1 || step > hi[field])
                    goto bad;
            }
            if (*p != ',')
                break;
            p++;
        }
        if (*p && *p != ' ' && *p != '\t')
            goto bad;
        while (*p == ' ' || *p == '\t')
            p++;
    }
    if (field == 5 && *p == '\0')
        return 0;
    if (err) {
        err->code = INGEST_EINVAL;
        snprintf(err->reason, sizeof(err->reason), "cron: expected 5 fields (minute hour day-of-month month day-of-week)");
    }
    return INGEST_EINVAL;
bad:
    if (err) {
        err->code = INGEST_EINVAL;
        snprintf(err->reason, sizeof(err->reason), "cron: bad %s field at '%.20s' (allowed %d-%d, '*', lists, ranges, /step)",
                 fname[field], p, lo[field], hi[field]);
    }
    return INGEST_EINVAL;
}

int ingest_e164_shape(const char *s)
{
    size_t n;

    if (!s || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return 0;
    n = strspn(s + 1, "0123456789");
    return s[1 + n] == '\0' && n >= 2 && n <= 15;
}

int ingest_mg_sid_shape(const char *s)
{
    return s && strncmp(s, "MG", 2) == 0 && strlen(s) == 34 && strspn(s + 2, "0123456789abcdef") == 32;
}

int ingest_estimate_finish(const ingest_campaign_t *c, long long segments, int64_t start_utc, int64_t *out)
{
    quiet_zones_t z;
    quiet_policy_t pol;
    quiet_decision_t d;
    double remaining, rate = c->rate_mps > 0 ? c->rate_mps : 1.0;
    int64_t t = start_utc;
    int rc;

    *out = start_utc;
    if (segments <= 0)
        return 0;
    remaining = (double)segments / rate;
    rc = quiet_zones_for(NULL, c->region, NULL, c->timezone, &z);
    if (rc != 0)
        return rc;
    pol.start_min = c->quiet_start_min;
    pol.end_min = c->quiet_end_min;
    /* Each pass either waits for the window or uses it up, so a year of days bounds the loop. */
    for (int iter = 0; iter < 800; iter++) {
        int64_t open_for = INT64_MAX;
        rc = quiet_check(&z, c->quiet_start_min >= 0 ? &pol : NULL, t, &d);
        if (rc != 0)
            return rc;
        if (!d.allowed) {
            t = d.next_open_utc > t ? d.next_open_utc : t + 60;
            continue;
        }
        for (int i = 0; i < d.count; i++) {
            const quiet_local_t *l = &d.zone[i].local;
            int64_t left = (int64_t)d.zone[i].window_end_min * 60 - (l->hour * 3600 + l->minute * 60 + l->second);
            if (left < open_for)
                open_for = left;
        }
        if (open_for <= 0)
            open_for = 60;
        if (remaining <= (double)open_for) {
            *out = t + (int64_t)(remaining + 0.999);
            return 0;
        }
        remaining -= (double)open_for;
        t += open_for;
    }
    return QUIET_ENOWINDOW;
}

const char *ingest_strerror(int err)
{
    switch (err) {
    case 0: return "ok";
    case INGEST_EINVAL: return "invalid argument";
    case INGEST_EEMPTY: return "empty file";
    case INGEST_EHEADER: return "unusable header row";
    case INGEST_EPARSE: return "malformed CSV";
    case INGEST_ETOOBIG: return "over a size limit";
    case INGEST_ENOROWS: return "no data rows";
    case INGEST_EIO: return "spool I/O error";
    case INGEST_ESTATE: return "call out of order";
    case INGEST_ETEMPLATE: return "malformed template";
    }
    return "unknown error";
}
