/*
 * Unit tests for the pure parts of ingest/: header alias detection, template
 * syntax and rendering, the per-row step (validation, normalization, footer,
 * rejects and their reasons), cron syntax and sender shapes — table-driven, no
 * database. Also feeds whole CSV texts through stage 1 (ingest_new/feed/finish)
 * to check fatal errors and per-reason counts without a database.
 */
#include "common/buf.h"
#include "ingest/ingest.h"
#include "ingest/ingest_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define MAXF 16

/* Splits a comma-separated line (no quoting) into fields. */
static int split(const char *line, char buf[MAXF][256], const char *f[MAXF], size_t len[MAXF])
{
    int n = 0;
    const char *p = line;

    for (;;) {
        const char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        memcpy(buf[n], p, l);
        buf[n][l] = '\0';
        f[n] = buf[n];
        len[n] = l;
        n++;
        if (!c || n == MAXF)
            break;
        p = c + 1;
    }
    return n;
}

/* ---- header ---- */

static const struct {
    const char *header;
    int rc;
    int phone_col, region_col, tz_col, tags_col;
    const char *reason_has;
} header_cases[] = {
    {"phone,first_name", 0, 0, -1, -1, -1, NULL},
    {"\xef\xbb\xbfphone,name", 0, 0, -1, -1, -1, NULL},
    {"Name,Phone Number,Region,TimeZone,Tags", 0, 1, 2, 3, 4, NULL},
    {"mobile,x", 0, 0, -1, -1, -1, NULL},
    {"to,number", 1, 1, -1, -1, -1, NULL}, /* "number" outranks "to" */
    {"  PHONE  ,a", 0, 0, -1, -1, -1, NULL},
    {"phone-number,a", 0, 0, -1, -1, -1, NULL},
    {"first_name,last_name", INGEST_EHEADER, -1, -1, -1, -1, "no phone column"},
    {"phone,a,A", INGEST_EHEADER, -1, -1, -1, -1, "duplicate column 'a'"},
    {"phone,\x89PNG", INGEST_EHEADER, -1, -1, -1, -1, "not a readable name"},
    {"{\"phone\": \"+14155550100\"}", INGEST_EHEADER, -1, -1, -1, -1, "no phone column"},
    {"phone,,", 0, 0, -1, -1, -1, NULL},
};

static void test_header(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(header_cases) / sizeof(header_cases[0]); i++) {
        char buf[MAXF][256];
        const char *f[MAXF];
        size_t len[MAXF];
        int n = split(header_cases[i].header, buf, f, len), rc;
        ingest_header_t h;
        ingest_error_t err = {0};
        int want_rc = header_cases[i].rc == 1 ? 0 : header_cases[i].rc;

        rc = ingest_header_parse(&h, f, len, n, &err);
        if (rc != want_rc)
            fail_msg("case %zu (%s): rc %d, want %d (%s)", i, header_cases[i].header, rc, want_rc, err.reason);
        if (rc == 0) {
            assert_int_equal(h.phone_col, header_cases[i].phone_col);
            assert_int_equal(h.region_col, header_cases[i].region_col);
            assert_int_equal(h.tz_col, header_cases[i].tz_col);
            assert_int_equal(h.tags_col, header_cases[i].tags_col);
        } else if (!strstr(err.reason, header_cases[i].reason_has)) {
            fail_msg("case %zu: reason '%s' lacks '%s'", i, err.reason, header_cases[i].reason_has);
        }
        ingest_header_free(&h);
    }
}

static void test_header_too_many_columns(void **state)
{
    static const char *f[INGEST_MAX_COLUMNS + 1];
    static size_t len[INGEST_MAX_COLUMNS + 1];
    ingest_header_t h;
    ingest_error_t err = {0};

    (void)state;
    for (int i = 0; i <= INGEST_MAX_COLUMNS; i++) {
        f[i] = "c";
        len[i] = 1;
    }
    assert_int_equal(ingest_header_parse(&h, f, len, INGEST_MAX_COLUMNS + 1, &err), INGEST_ETOOBIG);
    ingest_header_free(&h);
}

/* ---- templates ---- */

static const struct {
    const char *body;
    int ok;
} template_syntax[] = {
    {"Hello", 1},
    {"Hi {{first_name}}!", 1},
    {"Hi {{ First Name }}", 1},
    {"{{a}}{{b}}", 1},
    {"a { b } c }}", 1},
    {"Hi {{first_name}", 0},
    {"Hi {{}}", 0},
    {"Hi {{ }}", 0},
    {"Hi {{na$me}}", 0},
    {"trailing {{", 0},
    {"", 0},
    {"bad \xff utf8", 0},
};

static void test_template_syntax(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(template_syntax) / sizeof(template_syntax[0]); i++) {
        ingest_error_t err = {0};
        int rc = ingest_template_check(template_syntax[i].body, &err);
        if ((rc == 0) != template_syntax[i].ok)
            fail_msg("case %zu '%s': rc %d (%s)", i, template_syntax[i].body, rc, err.reason);
    }
}

static const struct {
    const char *body;
    const char *header;
    const char *row;
    const char *want; /* NULL: missing field */
    const char *missing;
} render_cases[] = {
    {"Hi {{first_name}}", "phone,first_name", "1,Ann", "Hi Ann", NULL},
    {"Hi {{First_Name}}", "phone,first_name", "1,Ann", "Hi Ann", NULL},
    {"Hi {{first_name}}", "phone,first_name", "1,", "Hi there", NULL},   /* default */
    {"Hi {{first_name}}", "phone,first_name", "1", "Hi there", NULL},    /* short row */
    {"{{city}} sale", "phone,first_name", "1,Ann", NULL, "city"},        /* no column, no default */
    {"{{city}} sale", "phone,city", "1,   ", NULL, "city"},              /* blank cell */
    {"{{a}}{{b}}!", "phone,a,b", "1,x,y", "xy!", NULL},
    {"no fields", "phone", "1", "no fields", NULL},
    {"{{phone}}", "phone", "+1415", "+1415", NULL},
};

static void test_template_render(void **state)
{
    static const ingest_default_t defs[] = {{"First Name", "there"}};

    (void)state;
    for (size_t i = 0; i < sizeof(render_cases) / sizeof(render_cases[0]); i++) {
        char hb[MAXF][256], rb[MAXF][256];
        const char *hf[MAXF], *rf[MAXF], *missing;
        size_t hl[MAXF], rl[MAXF];
        int hn = split(render_cases[i].header, hb, hf, hl), rn = split(render_cases[i].row, rb, rf, rl), rc;
        ingest_header_t h;
        ingest_template_t t;
        ingest_error_t err = {0};
        ingest_row_t row = {.rn = 2, .nfields = rn, .f = rf, .len = rl};
        buf_t out;

        assert_int_equal(ingest_header_parse(&h, hf, hl, hn, &err), 0);
        assert_int_equal(ingest_template_compile(&t, render_cases[i].body, &h, defs, 1, &err), 0);
        buf_init(&out, 4096);
        rc = ingest_template_render(&t, &row, defs, &out, &missing);
        if (render_cases[i].want) {
            assert_int_equal(rc, 0);
            assert_string_equal(buf_str(&out), render_cases[i].want);
        } else {
            assert_int_equal(rc, -1);
            assert_string_equal(missing, render_cases[i].missing);
        }
        buf_close(&out);
        ingest_header_free(&h);
    }
}

/* ---- the row step ---- */

static const struct {
    const char *row;      /* phone,first_name,region,timezone,tags */
    const char *reason;   /* NULL: accepted */
    const char *e164;     /* when accepted */
    const char *detail_has;
    unsigned flags;
} row_cases[] = {
    {"(415) 555-0199,Ann,,,", NULL, "+14155550199", NULL, 0},
    {"+44 20 7946 0958,Ann,,,", NULL, "+442079460958", NULL, 0},
    {"020 7946 0958,Ann,GB,,", NULL, "+442079460958", NULL, 0},
    {"020 7946 0958,Ann,gb,,", NULL, "+442079460958", NULL, 0},
    {"4155550199,Ann,,America/Los_Angeles,vip;new", NULL, "+14155550199", NULL, 0},
    {"12345,Ann,,,", "invalid_number", NULL, "too_short", 0},
    {"hello,Ann,,,", "invalid_number", NULL, "not_a_number", 0},
    {",Ann,,,", "missing_phone", NULL, NULL, 0},
    {"   ,Ann,,,", "missing_phone", NULL, NULL, 0},
    {"4155550199,Ann,XX,,", "invalid_region", NULL, "XX", 0},
    {"4155550199,Ann,USA,,", "invalid_region", NULL, NULL, 0},
    {"4155550199,Ann,,Mars/Olympus,", "invalid_timezone", NULL, NULL, 0},
    {"4155550199,An\xe9,,,", "invalid_text", NULL, "first_name", 0},
    {"4155550199,Ann,,,", "malformed_row", NULL, "more fields", INGEST_ROW_TOO_MANY_FIELDS},
    {"4155550199,Ann,,,", "malformed_row", NULL, "longer", INGEST_ROW_TOO_LONG},
    {"4155550199,,,,", "missing_field", NULL, "first_name", 0},
};

static void test_rows(void **state)
{
    char hb[MAXF][256];
    const char *hf[MAXF];
    size_t hl[MAXF];
    int hn = split("phone,first_name,region,timezone,tags", hb, hf, hl);
    ingest_header_t h;
    ingest_template_t t;
    ingest_error_t err = {0};
    ingest_campaign_t c = {.body = "Hi {{first_name}}", .region = "US", .footer_policy = FOOTER_POLICY_FIRST};
    ingest_rowctx_t x;

    (void)state;
    assert_int_equal(ingest_header_parse(&h, hf, hl, hn, &err), 0);
    assert_int_equal(ingest_template_compile(&t, c.body, &h, NULL, 0, &err), 0);
    ingest_rowctx_init(&x, &c, &h, &t);
    for (size_t i = 0; i < sizeof(row_cases) / sizeof(row_cases[0]); i++) {
        char rb[MAXF][256];
        const char *rf[MAXF];
        size_t rl[MAXF];
        int rn = split(row_cases[i].row, rb, rf, rl);
        ingest_row_t row = {.rn = (long)i + 2, .nfields = rn, .f = rf, .len = rl, .flags = row_cases[i].flags};
        ingest_row_result_t res;
        buf_t out;
        char want_rn[32];

        buf_init(&out, 1 << 20);
        assert_int_equal(ingest_row_process(&x, &row, &out, &res), 0);
        if (row_cases[i].reason == NULL) {
            if (res.reason != -1)
                fail_msg("case %zu '%s': rejected %s (%s)", i, row_cases[i].row, ingest_reason_name(res.reason),
                         res.detail);
            assert_string_equal(res.e164, row_cases[i].e164);
        } else {
            if (res.reason < 0 || strcmp(ingest_reason_name(res.reason), row_cases[i].reason) != 0)
                fail_msg("case %zu '%s': got %s, want %s", i, row_cases[i].row,
                         res.reason < 0 ? "accepted" : ingest_reason_name(res.reason), row_cases[i].reason);
            if (row_cases[i].detail_has && !strstr(res.detail, row_cases[i].detail_has))
                fail_msg("case %zu: detail '%s' lacks '%s'", i, res.detail, row_cases[i].detail_has);
        }
        /* One COPY line with 15 columns, starting with the record number. */
        snprintf(want_rn, sizeof(want_rn), "%ld\t", row.rn);
        assert_memory_equal(out.data, want_rn, strlen(want_rn));
        assert_int_equal(out.data[out.len - 1], '\n');
        assert_null(memchr(out.data, '\n', out.len - 1));
        {
            int tabs = 0;
            for (size_t k = 0; k < out.len; k++)
                tabs += out.data[k] == '\t';
            assert_int_equal(tabs, 14);
        }
        buf_close(&out);
    }
    ingest_rowctx_close(&x);
    ingest_header_free(&h);
}

static void test_row_footer_and_escaping(void **state)
{
    char hb[MAXF][256];
    const char *hf[MAXF];
    size_t hl[MAXF];
    int hn = split("phone,note", hb, hf, hl);
    ingest_header_t h;
    ingest_template_t t;
    ingest_error_t err = {0};
    ingest_campaign_t c = {.body = "Note: {{note}}", .region = "US", .footer_policy = FOOTER_POLICY_FIRST};
    ingest_rowctx_t x;
    const char *rf[2] = {"4155550199", "tab\there\\ and\nnewline"};
    size_t rl[2] = {10, strlen(rf[1])};
    ingest_row_t row = {.rn = 2, .nfields = 2, .f = rf, .len = rl};
    ingest_row_result_t res;
    buf_t out;

    (void)state;
    assert_int_equal(ingest_header_parse(&h, hf, hl, hn, &err), 0);
    assert_int_equal(ingest_template_compile(&t, c.body, &h, NULL, 0, &err), 0);
    ingest_rowctx_init(&x, &c, &h, &t);
    buf_init(&out, 1 << 20);
    assert_int_equal(ingest_row_process(&x, &row, &out, &res), 0);
    assert_int_equal(res.reason, -1);
    /* Body escaped for COPY, the first-message suffix carries the default footer. */
    assert_non_null(strstr(buf_str(&out), "Note: tab\\there\\\\ and\\nnewline\t1\tUCS-2\t\\nReply STOP to opt out\t1\tUCS-2\t"));
    assert_non_null(strstr(buf_str(&out), "{\"note\":\"tab\\\\u0009here\\\\\\\\ and\\\\u000anewline\"}"));
    buf_close(&out);

    /* A body that already says how to opt out gets no footer. */
    c.body = "Reply STOP to opt out. {{note}}";
    assert_int_equal(ingest_template_compile(&t, c.body, &h, NULL, 0, &err), 0);
    buf_init(&out, 1 << 20);
    assert_int_equal(ingest_row_process(&x, &row, &out, &res), 0);
    assert_non_null(strstr(buf_str(&out), "\tUCS-2\t\\N\t\\N\t\\N\t"));
    buf_close(&out);

    /* Over 1600 characters: rejected. */
    {
        static char big[2000];
        memset(big, 'a', sizeof(big) - 1);
        rf[1] = big;
        rl[1] = strlen(big);
        buf_init(&out, 1 << 20);
        assert_int_equal(ingest_row_process(&x, &row, &out, &res), 0);
        assert_string_equal(ingest_reason_name(res.reason), "body_too_long");
        buf_close(&out);
    }
    ingest_rowctx_close(&x);
    ingest_header_free(&h);
}

/* ---- cron and senders ---- */

static void test_cron(void **state)
{
    static const struct {
        const char *expr;
        int ok;
    } cases[] = {
        {"0 9 * * 1-5", 1},    {"*/15 * * * *", 1},  {"0 9,12,18 1 jan-mar mon", 1}, {"30 8 * * 7", 1},
        {"0 0 1 1 *", 1},      {"* * * *", 0},       {"* * * * * *", 0},             {"60 * * * *", 0},
        {"0 24 * * *", 0},     {"0 0 0 * *", 0},     {"0 0 * 13 *", 0},              {"5-1 * * * *", 0},
        {"*/0 * * * *", 0},    {"a b c d e", 0},     {"", 0},                        {"0 9 * * 1-5 extra", 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ingest_error_t err = {0};
        int rc = ingest_cron_check(cases[i].expr, &err);
        if ((rc == 0) != cases[i].ok)
            fail_msg("cron '%s': rc %d (%s)", cases[i].expr, rc, err.reason);
    }
}

static void test_shapes(void **state)
{
    (void)state;
    assert_true(ingest_e164_shape("+14155550100"));
    assert_true(ingest_e164_shape("+15005550006"));
    assert_false(ingest_e164_shape("14155550100"));
    assert_false(ingest_e164_shape("+04155550100"));
    assert_false(ingest_e164_shape("+1415555010012345"));
    assert_false(ingest_e164_shape("+1 415"));
    assert_true(ingest_mg_sid_shape("MG0123456789abcdef0123456789abcdef"));
    assert_false(ingest_mg_sid_shape("MG0123456789ABCDEF0123456789abcdef"));
    assert_false(ingest_mg_sid_shape("MG0123"));
    assert_false(ingest_mg_sid_shape("PN0123456789abcdef0123456789abcdef"));
}

/* ---- stage 1 over whole texts ---- */

typedef struct stage1_case {
    const char *name;
    const char *text;
    size_t len; /* 0: strlen */
    int rc;     /* of feed or finish */
    long rows, candidates, invalid;
} stage1_case_t;

static int run_stage1(const char *text, size_t len, ingest_report_t *rep, ingest_error_t *err, size_t slice)
{
    ingest_campaign_t c = {.body = "Hi {{first_name}}", .region = "US", .footer_policy = FOOTER_POLICY_FIRST};
    ingest_default_t defs[] = {{"first_name", "there"}};
    ingest_options_t opt = {.threads = 2};
    ingest_t *ing;
    int rc;

    c.defaults = defs;
    c.n_defaults = 1;
    assert_int_equal(ingest_new(&c, &opt, &ing, err), 0);
    rc = 0;
    for (size_t off = 0; off < len && rc == 0; off += slice)
        rc = ingest_feed(ing, text + off, len - off < slice ? len - off : slice, err);
    if (rc == 0)
        rc = ingest_finish(ing, err);
    *rep = *ingest_report(ing);
    ingest_free(ing);
    return rc;
}

static void test_stage1(void **state)
{
#define T(s) s, sizeof(s) - 1
    static const stage1_case_t cases[] = {
        {"empty", T(""), INGEST_EEMPTY, 0, 0, 0},
        {"header only", T("phone,first_name\n"), INGEST_ENOROWS, 0, 0, 0},
        {"header only, CRLF no newline", T("phone,first_name"), INGEST_ENOROWS, 0, 0, 0},
        {"no phone column", T("name,email\nAnn,a@b\n"), INGEST_EHEADER, 0, 0, 0},
        {"unterminated quote", T("phone,first_name\n4155550199,\"Ann\n4155550198,Bob\n"), INGEST_EPARSE, 0, 0, 0},
        {"BOM CRLF quoted", T("\xef\xbb\xbfphone,first_name\r\n\"(415) 555-0199\",\"A, \"\"B\"\"\"\r\n"), 0, 1, 1, 0},
        {"CR only", T("phone,first_name\r4155550199,Ann\r4155550198,Bob\r"), 0, 2, 2, 0},
        {"NUL in a field", T("phone,first_name\n4155550199,A\0n\n4155550198,Bob\n"), 0, 2, 1, 1},
        {"latin-1", T("phone,first_name\n4155550199,Ren\xe9\n4155550198,Bob\n"), 0, 2, 1, 1},
        {"png", T("\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), INGEST_EHEADER, 0, 0, 0},
        {"json", T("[{\"phone\": \"+14155550199\", \"first_name\": \"Ann\"}]\n"), INGEST_EPARSE, 0, 0, 0},
        {"json lines", T("{\"phone\":\"+14155550199\"}\n"), INGEST_EHEADER, 0, 0, 0},
        {"extra fields", T("phone,first_name\n4155550199,Ann,extra\n"), 0, 1, 0, 1},
        {"blank lines skipped", T("phone,first_name\n\n4155550199,Ann\n\n"), 0, 1, 1, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (size_t slice = 1; slice <= 4096; slice *= 4096) {
            ingest_report_t rep;
            ingest_error_t err = {0};
            size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
            int rc = run_stage1(cases[i].text, len, &rep, &err, slice);
            if (rc != cases[i].rc)
                fail_msg("%s (slice %zu): rc %d, want %d (%s)", cases[i].name, slice, rc, cases[i].rc, err.reason);
            if (rc == 0 && (rep.rows != cases[i].rows || rep.accepted != cases[i].candidates ||
                            rep.invalid != cases[i].invalid))
                fail_msg("%s: rows %ld accepted %ld invalid %ld", cases[i].name, rep.rows, rep.accepted, rep.invalid);
            if (rc != 0 && err.reason[0] == '\0')
                fail_msg("%s: no reason", cases[i].name);
        }
    }
}

static void test_stage1_caps(void **state)
{
    buf_t b;
    ingest_report_t rep;
    ingest_error_t err = {0};

    (void)state;
    /* A 10 MB field is refused with a clear error. */
    buf_init(&b, 16u << 20);
    assert_int_equal(buf_puts(&b, "phone,first_name\n4155550199,\""), 0);
    for (int i = 0; i < 10 * 1024; i++) {
        static char kb[1024];
        memset(kb, 'x', sizeof(kb));
        assert_int_equal(buf_append(&b, kb, sizeof(kb)), 0);
    }
    assert_int_equal(buf_puts(&b, "\"\n"), 0);
    assert_int_equal(run_stage1(b.data, b.len, &rep, &err, 1 << 20), INGEST_ETOOBIG);
    assert_non_null(strstr(err.reason, "longer than"));
    assert_int_equal(err.row, 2);
    buf_close(&b);

    /* 100k columns in the header. */
    buf_init(&b, 1u << 20);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(i ? buf_printf(&b, ",c%d", i) : buf_puts(&b, "phone"), 0);
    assert_int_equal(buf_puts(&b, "\n4155550199\n"), 0);
    assert_int_equal(run_stage1(b.data, b.len, &rep, &err, 65536), INGEST_ETOOBIG);
    assert_non_null(strstr(err.reason, "columns"));
    buf_close(&b);

    /* 100k fields in a data row: that row is rejected, the next is fine. */
    buf_init(&b, 1u << 20);
    assert_int_equal(buf_puts(&b, "phone,first_name\n4155550199"), 0);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(buf_puts(&b, ",x"), 0);
    assert_int_equal(buf_puts(&b, "\n4155550198,Bob\n"), 0);
    assert_int_equal(run_stage1(b.data, b.len, &rep, &err, 65536), 0);
    assert_int_equal(rep.rows, 2);
    assert_int_equal(rep.by_reason[INGEST_R_MALFORMED_ROW], 1);
    assert_int_equal(rep.accepted, 1);
    buf_close(&b);
}

/* Reads a whole spool file from its start. */
static char *slurp_fd(int fd, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap);
    ssize_t r;

    assert_non_null(p);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    while ((r = read(fd, p + n, cap - n - 1)) > 0) {
        n += (size_t)r;
        if (cap - n < 4096) {
            cap *= 2;
            p = realloc(p, cap);
            assert_non_null(p);
        }
    }
    p[n] = '\0';
    *len = n;
    return p;
}

/*
 * Within-file duplicates across many batches and both workers: the first row wins and
 * each later one is a reject naming it; both spools come out in file order.
 */
static void test_stage1_dedup_order(void **state)
{
    enum { N = 30000 };
    ingest_campaign_t c = {.body = "Hi {{first_name}}", .region = "US", .footer_policy = FOOTER_POLICY_NEVER};
    ingest_options_t opt = {.threads = 2};
    ingest_error_t err = {0};
    ingest_t *ing;
    buf_t in;
    char *acc, *rej, *line, *save = NULL;
    size_t alen, rlen;
    long prev = 0, k = 0;

    (void)state;
    buf_init(&in, 8u << 20);
    assert_int_equal(buf_puts(&in, "phone,first_name\n"), 0);
    /* Rows 2..N+1: number (i % (N/3)), so each number comes three times, in three formats. */
    for (long i = 0; i < N; i++) {
        long num = i % (N / 3);
        const char *fmt = i < N / 3 ? "415%07ld,A\n" : i < 2 * N / 3 ? "+1 415 %07ld,B\n" : "(415) %07ld,C\n";
        assert_int_equal(buf_printf(&in, fmt, 2000000 + num), 0);
    }
    assert_int_equal(ingest_new(&c, &opt, &ing, &err), 0);
    for (size_t off = 0; off < in.len; off += 100000)
        assert_int_equal(ingest_feed(ing, in.data + off, in.len - off < 100000 ? in.len - off : 100000, &err), 0);
    assert_int_equal(ingest_finish(ing, &err), 0);
    assert_int_equal(ingest_report(ing)->accepted, N / 3);
    assert_int_equal(ingest_report(ing)->duplicate, 2 * N / 3);

    acc = slurp_fd(ingest_spool_fd(ing), &alen);
    assert_int_equal(alen, ingest_spool_bytes(ing));
    for (line = strtok_r(acc, "\n", &save); line; line = strtok_r(NULL, "\n", &save), k++) {
        long rn = strtol(line, NULL, 10);
        char want[32];
        assert_true(rn > prev); /* file order */
        prev = rn;
        assert_int_equal(rn, k + 2);
        snprintf(want, sizeof(want), "\t+1415%07ld\t", 2000000 + k);
        assert_non_null(strstr(line, want));
        assert_null(strstr(line, "\\N\t\\N\t\\N\t\\N")); /* no reason/detail columns */
    }
    assert_int_equal(k, N / 3);

    rej = slurp_fd(ingest_rejects_fd(ing), &rlen);
    assert_int_equal(rlen, ingest_rejects_bytes(ing));
    prev = 0;
    k = 0;
    save = NULL;
    for (line = strtok_r(rej, "\n", &save); line; line = strtok_r(NULL, "\n", &save), k++) {
        long rn = strtol(line, NULL, 10), first;
        const char *d = strstr(line, "\tduplicate\tduplicate of row ");
        assert_true(rn > prev);
        prev = rn;
        assert_non_null(d);
        first = strtol(d + strlen("\tduplicate\tduplicate of row "), NULL, 10);
        assert_int_equal(first, (rn - 2) % (N / 3) + 2);
    }
    assert_int_equal(k, 2 * N / 3);
    free(acc);
    free(rej);
    buf_close(&in);
    ingest_free(ing);
}

static void test_numset(void **state)
{
    ingest_numset_t s;
    uint32_t first = 0;

    (void)state;
    ingest_numset_init(&s);
    for (uint32_t i = 0; i < 200000; i++)
        assert_int_equal(ingest_numset_put(&s, 14150000000ULL + i * 7919ULL, i + 2, &first), 0);
    for (uint32_t i = 0; i < 200000; i += 997) {
        assert_int_equal(ingest_numset_put(&s, 14150000000ULL + i * 7919ULL, 1, &first), 1);
        assert_int_equal(first, i + 2);
    }
    assert_int_equal(s.n, 200000);
    /* Packed: 8-byte slots at most 3/4 and (after a part's doubling) at least 3/8 full. */
    assert_true(ingest_numset_bytes(&s) <= 200000 * 8 * 8 / 3 + 256 * 64 * 20);
    /* Long numbers and late record numbers take the wide table; all are found again. */
    assert_int_equal(ingest_numset_put(&s, 999999999999999ULL, 5, &first), 0);
    assert_int_equal(ingest_numset_put(&s, 14150000001ULL, 40000000, &first), 0);
    assert_int_equal(ingest_numset_put(&s, 999999999999999ULL, 9, &first), 1);
    assert_int_equal(first, 5);
    assert_int_equal(ingest_numset_put(&s, 14150000001ULL, 9, &first), 1);
    assert_int_equal(first, 40000000);
    assert_int_equal(ingest_numset_get(&s, 14150000000ULL + 7919ULL * 3, &first), 1);
    assert_int_equal(first, 5);
    assert_int_equal(ingest_numset_get(&s, 123, &first), 0);
    assert_int_equal(s.n, 200002);
    ingest_numset_close(&s);
    assert_int_equal(ingest_e164_key("+14155550100"), 14155550100ULL);
    assert_int_equal(ingest_e164_key("+999999999999999"), 999999999999999ULL);
    assert_int_equal(ingest_e164_key("+9999999999999999"), 0); /* 16 digits */
    assert_int_equal(ingest_e164_key("14155550100"), 0);
    assert_int_equal(ingest_e164_key("+1"), 0);
    assert_int_equal(ingest_e164_key("+1415x"), 0);
}

static void test_estimate(void **state)
{
    ingest_campaign_t c = {.region = "US", .timezone = "America/New_York", .rate_mps = 1, .quiet_start_min = -1,
                           .quiet_end_min = -1};
    int64_t end;

    (void)state;
    /* 2030-01-15 15:00 UTC is 10:00 in New York: inside the window, 100 s of sending. */
    assert_int_equal(ingest_estimate_finish(&c, 100, 1894719600, &end), 0);
    assert_int_equal(end, 1894719600 + 100);
    /* 02:00 UTC is 21:00 the evening before: wait for 08:00 EST (13:00 UTC). */
    assert_int_equal(ingest_estimate_finish(&c, 100, 1894672800, &end), 0);
    assert_int_equal(end, 1894672800 + 11 * 3600 + 100);
    /* A campaign window of 09:00-10:00 and two hours of sending at 1/s: three days. */
    c.quiet_start_min = 9 * 60;
    c.quiet_end_min = 10 * 60;
    assert_int_equal(ingest_estimate_finish(&c, 7200, 1894719600, &end), 0);
    assert_int_equal(end, 1894719600 - 3600 + 2 * 86400 + 3600);
    assert_int_equal(ingest_estimate_finish(&c, 0, 1894719600, &end), 0);
    assert_int_equal(end, 1894719600);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),          cmocka_unit_test(test_header_too_many_columns),
        cmocka_unit_test(test_template_syntax), cmocka_unit_test(test_template_render),
        cmocka_unit_test(test_rows),            cmocka_unit_test(test_row_footer_and_escaping),
        cmocka_unit_test(test_cron),            cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_stage1),          cmocka_unit_test(test_stage1_caps),
        cmocka_unit_test(test_estimate),        cmocka_unit_test(test_stage1_dedup_order),
        cmocka_unit_test(test_numset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
