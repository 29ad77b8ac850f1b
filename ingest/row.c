/*
 * The pure parts of the upload pipeline: reading the header row (which column holds
 * the phone number, which are merge fields), compiling and rendering the body
 * template, and the per-row step that turns one CSV record into one line of the
 * staging COPY. No I/O, no locks: the worker threads of ingest.c each run these on
 * their own ingest_rowctx_t, and the unit tests call them directly.
 */
#include "ingest/ingest_int.h"
#include "compliance/phone.h"
#include "compliance/quiet.h"
#include "compliance/segments.h"
#include "common/utf8.h"
#include "common/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longest rendered body looked at; anything longer is far over SMS_MAX_UNITS anyway. */
#define BODY_CAP (64u * 1024)
/* Longest raw phone value kept with a reject. */
#define RAW_CAP 100

static const char *const phone_aliases[] = {"phone", "phone_number", "mobile", "number", "to"};

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static int has_nul(const char *s, size_t n)
{
    return memchr(s, '\0', n) != NULL;
}

int ingest_utf8_ok(const char *str, size_t n)
{
    return !has_nul(str, n) && utf8_valid(str, n);
}

int ingest_copy_escape(buf_t *out, const char *s, size_t n)
{
    size_t start = 0;

    for (size_t i = 0; i < n; i++) {
        const char *esc;
        switch (s[i]) {
        case '\\': esc = "\\\\"; break;
        case '\t': esc = "\\t"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        default: continue;
        }
        if (buf_append(out, s + start, i - start) != 0 || buf_append(out, esc, 2) != 0)
            return BUF_ETOOBIG;
        start = i + 1;
    }
    return buf_append(out, s + start, n - start);
}

int ingest_name_normalize(const char *s, size_t n, char out[INGEST_MAX_NAME + 1])
{
    size_t o = 0;
    int pending_sep = 0;

    out[0] = '\0';
    while (n > 0 && is_space((unsigned char)*s))
        s++, n--;
    while (n > 0 && is_space((unsigned char)s[n - 1]))
        n--;
    if (!ingest_utf8_ok(s, n))
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return -1;
        if (c == ' ' || c == '-' || c == '\t') {
            pending_sep = 1;
            continue;
        }
        if (pending_sep) {
            if (o >= INGEST_MAX_NAME)
                goto toolong;
            out[o++] = '_';
            pending_sep = 0;
        }
        if (o >= INGEST_MAX_NAME)
            goto toolong;
        out[o++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : (char)c;
    }
    out[o] = '\0';
    return 0;
toolong:
    out[0] = '\0';
    return -1;
}

static void set_err(ingest_error_t *err, int code, long row, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_err(ingest_error_t *err, int code, long row, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return;
    err->code = code;
    err->row = row;
    va_start(ap, fmt);
    vsnprintf(err->reason, sizeof(err->reason), fmt, ap);
    va_end(ap);
}

int ingest_header_find(const ingest_header_t *h, const char *name)
{
    for (int i = 0; i < h->ncols; i++)
        if (h->names[i][0] && strcmp(h->names[i], name) == 0)
            return i;
    return -1;
}

int ingest_header_parse(ingest_header_t *h, const char *const *fields, const size_t *lens, int n,
                        ingest_error_t *err)
{
    int rc = INGEST_EHEADER;

    memset(h, 0, sizeof(*h));
    h->phone_col = h->region_col = h->tz_col = h->tags_col = -1;
    if (n > INGEST_MAX_COLUMNS) {
        set_err(err, INGEST_ETOOBIG, 1, "header row has more than %d columns", INGEST_MAX_COLUMNS);
        rc = INGEST_ETOOBIG;
        goto out;
    }
    h->ncols = n;
    h->names = xcalloc(n > 0 ? (size_t)n : 1, sizeof(*h->names));
    for (int i = 0; i < n; i++) {
        const char *f = fields[i];
        size_t len = lens[i];
        if (i == 0 && len >= 3 && memcmp(f, "\xef\xbb\xbf", 3) == 0)
            f += 3, len -= 3;
        if (has_nul(f, len) || ingest_name_normalize(f, len, h->names[i]) != 0) {
            set_err(err, INGEST_EHEADER, 1,
                    "header row: column %d is not a readable name (binary data, not UTF-8, or longer "
                    "than %d bytes): is this a CSV file?",
                    i + 1, INGEST_MAX_NAME);
            goto out;
        }
        for (int j = 0; j < i; j++)
            if (h->names[i][0] && strcmp(h->names[i], h->names[j]) == 0) {
                set_err(err, INGEST_EHEADER, 1, "header row: duplicate column '%s' (columns %d and %d)",
                        h->names[i], j + 1, i + 1);
                goto out;
            }
    }
    for (size_t a = 0; a < sizeof(phone_aliases) / sizeof(phone_aliases[0]) && h->phone_col < 0; a++)
        h->phone_col = ingest_header_find(h, phone_aliases[a]);
    if (h->phone_col < 0) {
        char seen[96];
        size_t o = 0;
        seen[0] = '\0';
        for (int i = 0; i < n && o + 4 < sizeof(seen); i++)
            o += (size_t)snprintf(seen + o, sizeof(seen) - o, "%s%s", i ? "," : "", h->names[i]);
        if (o >= sizeof(seen) - 4)
            memcpy(seen + sizeof(seen) - 4, "...", 4);
        set_err(err, INGEST_EHEADER, 1,
                "no phone column in the header row (looked for " INGEST_PHONE_ALIASES "; found: %s): is this a "
                "CSV file with a header row?",
                seen);
        goto out;
    }
    h->region_col = ingest_header_find(h, "region");
    h->tz_col = ingest_header_find(h, "timezone");
    h->tags_col = ingest_header_find(h, "tags");
    rc = 0;
out:
    return rc;
}

void ingest_header_free(ingest_header_t *h)
{
    free(h->names);
    h->names = NULL;
    h->ncols = 0;
}

static int default_index(const ingest_default_t *defs, size_t ndefs, const char *name)
{
    char norm[INGEST_MAX_NAME + 1];

    for (size_t i = 0; i < ndefs; i++)
        if (ingest_name_normalize(defs[i].name, strlen(defs[i].name), norm) == 0 && strcmp(norm, name) == 0)
            return (int)i;
    return -1;
}

static int name_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.' || c == ' ';
}

int ingest_template_compile(ingest_template_t *t, const char *body, const ingest_header_t *h,
                            const ingest_default_t *defs, size_t ndefs, ingest_error_t *err)
{
    size_t i = 0, lit = 0, len = strlen(body);

    memset(t, 0, sizeof(*t));
    t->body = body;
    while (i + 1 < len) {
        size_t start, end;
        ingest_tpl_part_t *p;

        if (!(body[i] == '{' && body[i + 1] == '{')) {
            i++;
            continue;
        }
        start = i + 2;
        end = start;
        while (end < len && name_byte((unsigned char)body[end]))
            end++;
        if (end + 1 >= len || body[end] != '}' || body[end + 1] != '}') {
            if (err) {
                err->code = INGEST_ETEMPLATE;
                err->byte = i;
                snprintf(err->reason, sizeof(err->reason),
                         "template: '{{' at byte %zu is not closed by '}}' around a field name "
                         "(letters, digits, _ - .)",
                         i);
            }
            return INGEST_ETEMPLATE;
        }
        if (t->nparts >= INGEST_MAX_PLACEHOLDERS) {
            if (err) {
                err->code = INGEST_ETEMPLATE;
                err->byte = i;
                snprintf(err->reason, sizeof(err->reason), "template: more than %d merge fields",
                         INGEST_MAX_PLACEHOLDERS);
            }
            return INGEST_ETEMPLATE;
        }
        p = &t->part[t->nparts];
        if (ingest_name_normalize(body + start, end - start, p->name) != 0 || p->name[0] == '\0') {
            if (err) {
                err->code = INGEST_ETEMPLATE;
                err->byte = i;
                snprintf(err->reason, sizeof(err->reason),
                         "template: empty or over-long field name in '{{...}}' at byte %zu", i);
            }
            return INGEST_ETEMPLATE;
        }
        p->lit_off = lit;
        p->lit_len = i - lit;
        p->col = h ? ingest_header_find(h, p->name) : -1;
        p->def = default_index(defs, ndefs, p->name);
        t->nparts++;
        i = end + 2;
        lit = i;
    }
    t->tail_off = lit;
    t->tail_len = len - lit;
    return 0;
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_space((unsigned char)s[i]))
            return 0;
    return 1;
}

int ingest_template_render(const ingest_template_t *t, const ingest_row_t *row, const ingest_default_t *defs,
                           buf_t *out, const char **missing)
{
    *missing = NULL;
    for (int i = 0; i < t->nparts; i++) {
        const ingest_tpl_part_t *p = &t->part[i];
        if (buf_append(out, t->body + p->lit_off, p->lit_len) != 0)
            return BUF_ETOOBIG;
        if (p->col >= 0 && p->col < row->nfields && !blank(row->f[p->col], row->len[p->col])) {
            if (buf_append(out, row->f[p->col], row->len[p->col]) != 0)
                return BUF_ETOOBIG;
        } else if (p->def >= 0) {
            if (buf_puts(out, defs[p->def].value) != 0)
                return BUF_ETOOBIG;
        } else {
            *missing = p->name;
            return -1;
        }
    }
    return buf_append(out, t->body + t->tail_off, t->tail_len);
}

void ingest_rowctx_init(ingest_rowctx_t *x, const ingest_campaign_t *c, const ingest_header_t *h,
                        const ingest_template_t *t)
{
    memset(x, 0, sizeof(*x));
    x->camp = c;
    x->hdr = h;
    x->tpl = t;
    buf_init(&x->body, BODY_CAP);
    buf_init(&x->plain, BODY_CAP + 1024);
    buf_init(&x->first, BODY_CAP + 1024);
    buf_init(&x->tmp, INGEST_MAX_ROW * 7 + 1024); /* JSON escaping may grow text up to 6x */
}

void ingest_rowctx_close(ingest_rowctx_t *x)
{
    buf_close(&x->body);
    buf_close(&x->plain);
    buf_close(&x->first);
    buf_close(&x->tmp);
}

static int tz_valid(ingest_rowctx_t *x, const char *s, size_t n)
{
    char name[QUIET_TZ_MAX];

    if (n == 0 || n >= sizeof(name) || n >= sizeof(x->tz[0].name))
        return 0;
    memcpy(name, s, n);
    name[n] = '\0';
    for (unsigned i = 0; i < INGEST_TZ_CACHE; i++)
        if (strcmp(x->tz[i].name, name) == 0)
            return x->tz[i].valid;
    /* quiet_zone_valid() opens the zone file; a file uses few zones, so remember them. */
    {
        unsigned slot = x->tz_next++ % INGEST_TZ_CACHE;
        memcpy(x->tz[slot].name, name, n + 1);
        x->tz[slot].valid = quiet_zone_valid(name) == 0;
        return x->tz[slot].valid;
    }
}

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && is_space((unsigned char)**s))
        (*s)++, (*n)--;
    while (*n > 0 && is_space((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

/* The raw phone value as kept with a reject: valid UTF-8, no controls, at most RAW_CAP bytes. */
static int put_raw(buf_t *out, const char *s, size_t n)
{
    char tmp[RAW_CAP + 8];
    size_t o = 0, i = 0;

    while (i < n && o < RAW_CAP) {
        unsigned char c = (unsigned char)s[i];
        size_t k = 1;
        if (c >= 0x80) {
            k = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
            if (i + k > n || !ingest_utf8_ok(s + i, k) || o + k > RAW_CAP) {
                tmp[o++] = '?';
                i++;
                continue;
            }
            memcpy(tmp + o, s + i, k);
            o += k;
            i += k;
            continue;
        }
        tmp[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
        i++;
    }
    return ingest_copy_escape(out, tmp, o);
}

static int json_escape(buf_t *out, const char *s, size_t n)
{
    size_t start = 0;
    char u[8];

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c != '"' && c != '\\' && c >= 0x20)
            continue;
        if (buf_append(out, s + start, i - start) != 0)
            return BUF_ETOOBIG;
        if (c == '"' || c == '\\') {
            u[0] = '\\';
            u[1] = (char)c;
            if (buf_append(out, u, 2) != 0)
                return BUF_ETOOBIG;
        } else {
            snprintf(u, sizeof(u), "\\u%04x", c);
            if (buf_append(out, u, 6) != 0)
                return BUF_ETOOBIG;
        }
        start = i + 1;
    }
    return buf_append(out, s + start, n - start);
}

/* Builds the Postgres array literal of the tags cell into x->tmp; -1 with detail when over a cap. */
static int build_tags(ingest_rowctx_t *x, const char *s, size_t n, char *detail, size_t dlen)
{
    size_t i = 0;
    int count = 0;

    buf_reset(&x->tmp);
    if (buf_puts(&x->tmp, "{") != 0)
        return -1;
    while (i <= n) {
        size_t j = i;
        const char *t;
        size_t tl;
        while (j < n && s[j] != ',' && s[j] != ';' && s[j] != '|')
            j++;
        t = s + i;
        tl = j - i;
        trim(&t, &tl);
        if (tl > 0) {
            if (++count > INGEST_MAX_TAGS || tl > INGEST_MAX_TAG) {
                snprintf(detail, dlen, count > INGEST_MAX_TAGS ? "more than %d tags" : "a tag is longer than %d bytes",
                         count > INGEST_MAX_TAGS ? INGEST_MAX_TAGS : INGEST_MAX_TAG);
                return -1;
            }
            if (buf_puts(&x->tmp, count > 1 ? ",\"" : "\"") != 0)
                return -1;
            for (size_t k = 0; k < tl; k++) {
                if ((t[k] == '"' || t[k] == '\\') && buf_append(&x->tmp, "\\", 1) != 0)
                    return -1;
                if (buf_append(&x->tmp, t + k, 1) != 0)
                    return -1;
            }
            if (buf_puts(&x->tmp, "\"") != 0)
                return -1;
        }
        i = j + 1;
    }
    return buf_puts(&x->tmp, "}");
}

static int is_special(const ingest_header_t *h, int col)
{
    return col == h->phone_col || col == h->region_col || col == h->tz_col || col == h->tags_col;
}

static int build_attrs(ingest_rowctx_t *x, const ingest_row_t *row)
{
    const ingest_header_t *h = x->hdr;
    int n = row->nfields < h->ncols ? row->nfields : h->ncols, first = 1;

    buf_reset(&x->tmp);
    if (buf_puts(&x->tmp, "{") != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        if (is_special(h, i) || h->names[i][0] == '\0' || blank(row->f[i], row->len[i]))
            continue;
        if (buf_puts(&x->tmp, first ? "\"" : ",\"") != 0 || json_escape(&x->tmp, h->names[i], strlen(h->names[i])) != 0 ||
            buf_puts(&x->tmp, "\":\"") != 0 || json_escape(&x->tmp, row->f[i], row->len[i]) != 0 ||
            buf_puts(&x->tmp, "\"") != 0)
            return -1;
        first = 0;
    }
    return buf_puts(&x->tmp, "}");
}

#define TRY(expr)                  \
    do {                           \
        if ((expr) != 0)           \
            return BUF_ETOOBIG;    \
    } while (0)

/* Appends the decimal digits of v (>= 0) and then the NUL-terminated suffix. */
static int put_num(buf_t *out, unsigned long v, const char *suffix)
{
    char d[24];
    int n = 0;

    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    for (int i = 0; i < n / 2; i++) {
        char t = d[i];
        d[i] = d[n - 1 - i];
        d[n - 1 - i] = t;
    }
    TRY(buf_append(out, d, (size_t)n));
    return buf_puts(out, suffix);
}

static int put_reject(buf_t *out, const ingest_row_t *row, const char *raw, size_t rawlen, ingest_row_result_t *res)
{
    TRY(put_num(out, (unsigned long)row->rn, "\t\\N\t"));
    TRY(put_raw(out, raw, rawlen));
    TRY(buf_puts(out, "\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t"));
    TRY(buf_puts(out, ingest_reason_name((ingest_reason_t)res->reason)));
    TRY(buf_puts(out, "\t"));
    TRY(ingest_copy_escape(out, res->detail, strlen(res->detail)));
    return buf_puts(out, "\n");
}

static int reject(buf_t *out, const ingest_row_t *row, const char *raw, size_t rawlen, ingest_row_result_t *res,
                  ingest_reason_t r)
{
    res->reason = (int)r;
    res->e164[0] = '\0';
    return put_reject(out, row, raw, rawlen, res);
}

int ingest_row_process(ingest_rowctx_t *x, const ingest_row_t *row, buf_t *out, ingest_row_result_t *res)
{
    const ingest_header_t *h = x->hdr;
    const ingest_campaign_t *c = x->camp;
    const char *phone = "", *region = c->region, *missing, *tz = NULL;
    size_t phone_len = 0, tz_len = 0;
    char region_buf[3];
    phone_result_t pr;
    footer_result_t fr0, fr1;
    int rc, ncheck;

    res->reason = -1;
    res->detail[0] = '\0';
    res->e164[0] = '\0';
    res->segments = 0;
    res->first_segments = 0;
    if (h->phone_col < row->nfields) {
        phone = row->f[h->phone_col];
        phone_len = row->len[h->phone_col];
    }
    if (row->flags & INGEST_ROW_TOO_LONG) {
        snprintf(res->detail, sizeof(res->detail), "row is longer than %u bytes", INGEST_MAX_ROW);
        return reject(out, row, phone, phone_len, res, INGEST_R_MALFORMED_ROW);
    }
    if (row->flags & INGEST_ROW_TOO_MANY_FIELDS) {
        snprintf(res->detail, sizeof(res->detail), "row has more fields than the header's %d", h->ncols);
        return reject(out, row, phone, phone_len, res, INGEST_R_MALFORMED_ROW);
    }
    ncheck = row->nfields < h->ncols ? row->nfields : h->ncols;
    for (int i = 0; i < ncheck; i++) {
        if (!ingest_utf8_ok(row->f[i], row->len[i])) {
            snprintf(res->detail, sizeof(res->detail), "column %s: %s", h->names[i][0] ? h->names[i] : "(blank)",
                     has_nul(row->f[i], row->len[i]) ? "NUL byte"
                                                     : "not valid UTF-8 (save the file as UTF-8, not Latin-1)");
            return reject(out, row, phone, phone_len, res, INGEST_R_BAD_TEXT);
        }
    }
    if (blank(phone, phone_len)) {
        snprintf(res->detail, sizeof(res->detail), "no phone number in column %s", h->names[h->phone_col]);
        return reject(out, row, phone, phone_len, res, INGEST_R_MISSING_PHONE);
    }
    if (h->region_col >= 0 && h->region_col < row->nfields) {
        const char *r = row->f[h->region_col];
        size_t rl = row->len[h->region_col];
        trim(&r, &rl);
        if (rl > 0) {
            if (rl != 2) {
                snprintf(res->detail, sizeof(res->detail), "region must be a two-letter code");
                return reject(out, row, phone, phone_len, res, INGEST_R_BAD_REGION);
            }
            region_buf[0] = (char)(r[0] & ~0x20);
            region_buf[1] = (char)(r[1] & ~0x20);
            region_buf[2] = '\0';
            if (!phone_region_known(region_buf)) {
                snprintf(res->detail, sizeof(res->detail), "unknown region %.2s", r);
                return reject(out, row, phone, phone_len, res, INGEST_R_BAD_REGION);
            }
            region = region_buf;
        }
    }
    rc = phone_normalize(phone, phone_len, region, &pr);
    if (rc != PHONE_OK) {
        snprintf(res->detail, sizeof(res->detail), "%s", phone_reason(rc));
        return reject(out, row, phone, phone_len, res, INGEST_R_INVALID_NUMBER);
    }
    if (h->tz_col >= 0 && h->tz_col < row->nfields) {
        tz = row->f[h->tz_col];
        tz_len = row->len[h->tz_col];
        trim(&tz, &tz_len);
        if (tz_len > 0 && !tz_valid(x, tz, tz_len)) {
            snprintf(res->detail, sizeof(res->detail), "unknown time zone");
            return reject(out, row, phone, phone_len, res, INGEST_R_BAD_TIMEZONE);
        }
    }

    buf_reset(&x->body);
    rc = ingest_template_render(x->tpl, row, c->defaults, &x->body, &missing);
    if (rc == -1) {
        snprintf(res->detail, sizeof(res->detail), "missing field %s", missing);
        return reject(out, row, phone, phone_len, res, INGEST_R_MISSING_FIELD);
    }
    if (rc != 0) {
        snprintf(res->detail, sizeof(res->detail), "rendered body is longer than %d characters", SMS_MAX_UNITS);
        return reject(out, row, phone, phone_len, res, INGEST_R_BODY_TOO_LONG);
    }
    if (x->body.len == 0) {
        snprintf(res->detail, sizeof(res->detail), "body is empty after merging the fields");
        return reject(out, row, phone, phone_len, res, INGEST_R_MISSING_FIELD);
    }
    buf_reset(&x->plain);
    buf_reset(&x->first);
    if (c->footer_policy == FOOTER_POLICY_FIRST) {
        /*
         * One footer_apply for the first-message variant; the plain one is the body as
         * rendered, whose segments that call measured too (segments_before).
         */
        if (footer_apply(buf_str(&x->body), c->footer_text, c->footer_policy, 1, 0, &x->first, &fr1) != 0) {
            snprintf(res->detail, sizeof(res->detail), "rendered body is longer than %d characters", SMS_MAX_UNITS);
            return reject(out, row, phone, phone_len, res, INGEST_R_BODY_TOO_LONG);
        }
        TRY(buf_append(&x->plain, x->body.data, x->body.len));
        fr0 = fr1;
        if (fr1.appended) {
            fr0.required = 0;
            fr0.appended = 0;
            fr0.segments_after = fr1.segments_before;
            fr0.added_segments = 0;
            fr0.encoding_after = fr1.encoding_before;
            fr0.encoding_changed = 0;
            if (fr1.over_limit) {
                sms_info_t si;
                fr0.over_limit = sms_analyze(x->plain.data, x->plain.len, 0, &si) == 0 ? si.over_limit : 1;
            }
        }
    } else if (footer_apply(buf_str(&x->body), c->footer_text, c->footer_policy, 0, 0, &x->plain, &fr0) != 0) {
        snprintf(res->detail, sizeof(res->detail), "rendered body is longer than %d characters", SMS_MAX_UNITS);
        return reject(out, row, phone, phone_len, res, INGEST_R_BODY_TOO_LONG);
    } else {
        fr1 = fr0;
    }
    if (fr0.over_limit || fr1.over_limit) {
        sms_info_t si;
        const buf_t *b = fr1.over_limit && c->footer_policy == FOOTER_POLICY_FIRST ? &x->first : &x->plain;
        if (sms_analyze(b->data, b->len, 0, &si) != 0)
            si.units = b->len;
        snprintf(res->detail, sizeof(res->detail), "body is %zu characters%s; the limit is %d", si.units,
                 fr1.appended && !fr0.appended ? " with the opt-out footer" : "", SMS_MAX_UNITS);
        return reject(out, row, phone, phone_len, res, INGEST_R_BODY_TOO_LONG);
    }
    if (h->tags_col >= 0 && h->tags_col < row->nfields) {
        if (build_tags(x, row->f[h->tags_col], row->len[h->tags_col], res->detail, sizeof(res->detail)) != 0) {
            if (res->detail[0] == '\0')
                snprintf(res->detail, sizeof(res->detail), "tags column too long");
            return reject(out, row, phone, phone_len, res, INGEST_R_MALFORMED_ROW);
        }
    } else {
        buf_reset(&x->tmp);
        TRY(buf_puts(&x->tmp, "{}"));
    }

    /* rn, to_e164, raw, region, tz, body, segs, enc, f_suffix, f_segs, f_enc, tags, attrs, reason, detail */
    memcpy(res->e164, pr.e164, sizeof(res->e164));
    res->segments = fr0.segments_after;
    res->first_segments = fr0.segments_after;
    TRY(put_num(out, (unsigned long)row->rn, "\t"));
    TRY(buf_puts(out, pr.e164));
    TRY(buf_puts(out, "\t"));
    TRY(put_raw(out, phone, phone_len));
    TRY(buf_puts(out, "\t"));
    TRY(buf_puts(out, pr.region[0] ? pr.region : "\\N"));
    TRY(buf_puts(out, "\t"));
    if (tz && tz_len > 0)
        TRY(ingest_copy_escape(out, tz, tz_len));
    else
        TRY(buf_puts(out, "\\N"));
    TRY(buf_puts(out, "\t"));
    TRY(ingest_copy_escape(out, x->plain.data, x->plain.len));
    TRY(buf_puts(out, "\t"));
    TRY(put_num(out, fr0.segments_after, "\t"));
    TRY(buf_puts(out, sms_encoding_name(fr0.encoding_after)));
    TRY(buf_puts(out, "\t"));
    if (c->footer_policy == FOOTER_POLICY_FIRST && x->first.len > x->plain.len &&
        memcmp(x->first.data, x->plain.data, x->plain.len) == 0) {
        TRY(ingest_copy_escape(out, x->first.data + x->plain.len, x->first.len - x->plain.len));
        TRY(buf_puts(out, "\t"));
        TRY(put_num(out, fr1.segments_after, "\t"));
        TRY(buf_puts(out, sms_encoding_name(fr1.encoding_after)));
        TRY(buf_puts(out, "\t"));
        res->first_segments = fr1.segments_after;
    } else {
        TRY(buf_puts(out, "\\N\t\\N\t\\N\t"));
    }
    TRY(ingest_copy_escape(out, x->tmp.data, x->tmp.len));
    TRY(buf_puts(out, "\t"));
    if (build_attrs(x, row) != 0)
        return BUF_ETOOBIG;
    TRY(ingest_copy_escape(out, x->tmp.data, x->tmp.len));
    return buf_puts(out, "\t\\N\t\\N\n");
}

const char *ingest_reason_name(ingest_reason_t r)
{
    static const char *const names[INGEST_R_COUNT] = {
        [INGEST_R_INVALID_NUMBER] = "invalid_number", [INGEST_R_MISSING_PHONE] = "missing_phone",
        [INGEST_R_MISSING_FIELD] = "missing_field",   [INGEST_R_BODY_TOO_LONG] = "body_too_long",
        [INGEST_R_BAD_TEXT] = "invalid_text",         [INGEST_R_BAD_REGION] = "invalid_region",
        [INGEST_R_BAD_TIMEZONE] = "invalid_timezone", [INGEST_R_MALFORMED_ROW] = "malformed_row",
        [INGEST_R_DUPLICATE] = "duplicate",           [INGEST_R_SUPPRESSED] = "suppressed",
    };
    return (unsigned)r < INGEST_R_COUNT ? names[r] : "unknown";
}
