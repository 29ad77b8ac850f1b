/*
 * Unit tests for routing/: the evaluation cases in tests/data/routing/cases.tsv and the bad
 * documents in bad_cases.tsv (pgbouncer hba_test style), plus what a table cannot hold:
 * caps, the bounded catastrophic regex, folding, the regex prefilter against plain PCRE2,
 * the registry swap, and the JSON views.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "routing/routing_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes \xHH, \n, \t, \\ (and "\e" alone: empty) into out; returns the length or -1. */
static int unescape(const char *in, char *out, size_t cap)
{
    size_t n = 0;

    if (strcmp(in, "\\e") == 0)
        return 0;
    while (*in) {
        char c = *in++;
        if (c == '\\') {
            char e = *in++;
            if (e == 'x' && hexval(in[0]) >= 0 && hexval(in[1]) >= 0) {
                c = (char)(hexval(in[0]) * 16 + hexval(in[1]));
                in += 2;
            } else if (e == 'n') {
                c = '\n';
            } else if (e == 't') {
                c = '\t';
            } else if (e == '\\') {
                c = '\\';
            } else {
                return -1;
            }
        }
        if (n + 1 >= cap)
            return -1;
        out[n++] = c;
    }
    out[n] = '\0';
    return (int)n;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf;
    long n;

    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        fclose(fp);
        return NULL;
    }
    buf[n] = '\0';
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static routing_ruleset_t *load_set(const char *name)
{
    char path[1024];
    routing_ruleset_t *rs = NULL;
    routing_error_t err;
    size_t len;
    char *doc;
    int rc;

    snprintf(path, sizeof(path), "%s/routing/%s.json", HERALD_TEST_DATA_DIR, name);
    doc = read_file(path, &len);
    assert_non_null(doc);
    rc = rules_compile(doc, len, &rs, &err);
    if (rc != 0)
        fail_msg("%s: %s", path, err.text);
    free(doc);
    return rs;
}

static const char *const contact_tags[] = {"vip"};
static const routing_attr_t contact_attrs[] = {{"first_name", "Ana"}, {"city", ""}};

static void input_for(routing_input_t *in, const char *body, size_t len)
{
    memset(in, 0, sizeof(*in));
    in->body = body;
    in->body_len = len;
    in->from = "+14155550123";
    in->to = "+15005550006";
    in->tags = contact_tags;
    in->n_tags = 1;
    in->attrs = contact_attrs;
    in->n_attrs = 2;
}

/* Joins matched rule names (or action types) with commas into out; "-" when none. */
static void join_matched(const routing_decision_t *d, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < d->n_matched; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? "," : "", d->matched[i].name);
    if (!d->n_matched)
        snprintf(out, cap, "-");
}

static void join_actions(const routing_decision_t *d, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < d->n_actions; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? "," : "", routing_action_name(d->actions[i].type));
    if (!d->n_actions)
        snprintf(out, cap, "-");
}

static void form_str(const routing_decision_t *d, char *out, size_t cap)
{
    if (d->form.op == ROUTING_FORM_SET)
        snprintf(out, cap, "set:%s:%d", d->form.form, d->form.step);
    else
        snprintf(out, cap, "%s", d->form.op == ROUTING_FORM_CLEAR ? "clear" : "keep");
}

static int flags_ok(unsigned flags, const char *want)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"limit_hit", ROUTING_F_LIMIT_HIT}, {"budget", ROUTING_F_BUDGET},
                 {"invalid_utf8", ROUTING_F_INVALID_UTF8}, {"body_cut", ROUTING_F_BODY_CUT},
                 {"truncated", ROUTING_F_TRUNCATED}, {"carrier", ROUTING_F_CARRIER},
                 {"form", ROUTING_F_FORM}, {"no_rules", ROUTING_F_NO_RULES}};
    char buf[256], *tok, *save = NULL;
    unsigned need = 0;

    if (strcmp(want, "-") == 0)
        return (flags & (ROUTING_F_LIMIT_HIT | ROUTING_F_INVALID_UTF8 | ROUTING_F_TRUNCATED)) == 0;
    snprintf(buf, sizeof(buf), "%s", want);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (strcmp(tok, names[i].name) == 0)
                need |= names[i].bit;
    return (flags & need) == need;
}

/* routing_action_write_json() writes what json_dumps() writes for routing_action_to_json(). */
static int action_text_same(const routing_out_action_t *a, int lineno)
{
    json_t *j = routing_action_to_json(a);
    char *want = json_dumps(j, JSON_COMPACT);
    buf_t b;
    int same;

    buf_init(&b, 1 << 20);
    same = buf_append(&b, "{", 1) == 0 && routing_action_write_json(&b, a) == 0 && buf_append(&b, "}", 1) == 0 &&
           strcmp(buf_str(&b), want) == 0;
    if (!same)
        print_error("cases.tsv:%d: action text %s, want %s\n", lineno, buf_str(&b), want);
    buf_close(&b);
    free(want);
    json_decref(j);
    return same;
}

static void test_cases_table(void **state)
{
    char path[1024], line[4096];
    FILE *fp;
    int lineno = 0, cases = 0, failed = 0;
    routing_decision_t d;
    (void)state;

    routing_decision_init(&d);
    snprintf(path, sizeof(path), "%s/routing/cases.tsv", HERALD_TEST_DATA_DIR);
    fp = fopen(path, "r");
    assert_non_null(fp);
    while (fgets(line, sizeof(line), fp)) {
        char *f[8], *p = line, body[2048], text[2048], form_name[128] = "", got[1024], got2[1024];
        const char *first_text = NULL;
        routing_ruleset_t *rs;
        routing_input_t in;
        int nf = 0, len;

        line[strcspn(line, "\n")] = '\0';
        lineno++;
        if (line[0] == '#' || line[0] == '\0')
            continue;
        while (nf < 8 && p) {
            f[nf++] = p;
            p = strchr(p, '\t');
            if (p)
                *p++ = '\0';
        }
        if (nf != 8)
            fail_msg("cases.tsv:%d: %d fields, want 8", lineno, nf);
        len = unescape(f[2], body, sizeof(body));
        assert_true(len >= 0);
        assert_true(unescape(f[5], text, sizeof(text)) >= 0);
        rs = load_set(f[0]);
        input_for(&in, body, (size_t)len);
        if (strcmp(f[1], "-") != 0) {
            char *colon = strchr(f[1], ':');
            assert_non_null(colon);
            snprintf(form_name, sizeof(form_name), "%.*s", (int)(colon - f[1]), f[1]);
            in.form = form_name;
            in.form_step = atoi(colon + 1);
        }
        assert_int_equal(routing_evaluate(rs, &in, &d), 0);
        cases++;
        for (size_t i = 0; i < d.n_actions && !first_text; i++)
            first_text = d.actions[i].text;
        join_matched(&d, got, sizeof(got));
        if (strcmp(got, f[3]) != 0) {
            print_error("cases.tsv:%d: %s: matched %s, want %s\n", lineno, f[2], got, f[3]);
            failed++;
        }
        join_actions(&d, got, sizeof(got));
        if (strcmp(got, f[4]) != 0) {
            print_error("cases.tsv:%d: %s: actions %s, want %s\n", lineno, f[2], got, f[4]);
            failed++;
        }
        if (strcmp(f[5], "*") != 0 &&
            !(strcmp(f[5], "-") == 0 ? first_text == NULL : first_text && strcmp(first_text, text) == 0)) {
            print_error("cases.tsv:%d: %s: text \"%s\", want \"%s\"\n", lineno, f[2],
                        first_text ? first_text : "(none)", text);
            failed++;
        }
        form_str(&d, got2, sizeof(got2));
        if (strcmp(got2, f[6]) != 0) {
            print_error("cases.tsv:%d: %s: form %s, want %s\n", lineno, f[2], got2, f[6]);
            failed++;
        }
        if (!flags_ok(d.flags, f[7])) {
            print_error("cases.tsv:%d: %s: flags 0x%x, want %s\n", lineno, f[2], d.flags, f[7]);
            failed++;
        }
        for (size_t i = 0; i < d.n_actions; i++)
            failed += !action_text_same(&d.actions[i], lineno);
        rules_unref(rs);
    }
    fclose(fp);
    routing_decision_close(&d);
    assert_true(cases >= 50);
    assert_int_equal(failed, 0);
}

static void test_bad_documents(void **state)
{
    char path[1024], line[8192];
    FILE *fp;
    int lineno = 0, cases = 0, failed = 0;
    (void)state;

    snprintf(path, sizeof(path), "%s/routing/bad_cases.tsv", HERALD_TEST_DATA_DIR);
    fp = fopen(path, "r");
    assert_non_null(fp);
    while (fgets(line, sizeof(line), fp)) {
        char *code, *want, *doc;
        routing_ruleset_t *rs = NULL;
        routing_error_t err;
        int rc, want_rc;

        line[strcspn(line, "\n")] = '\0';
        lineno++;
        if (line[0] == '#' || line[0] == '\0')
            continue;
        code = line;
        want = strchr(code, '\t');
        assert_non_null(want);
        *want++ = '\0';
        doc = strchr(want, '\t');
        assert_non_null(doc);
        *doc++ = '\0';
        want_rc = strcmp(code, "syntax") == 0 ? ROUTING_ESYNTAX
                  : strcmp(code, "toobig") == 0 ? ROUTING_ETOOBIG
                                                : ROUTING_EINVALID;
        rc = rules_compile(doc, strlen(doc), &rs, &err);
        cases++;
        if (rc != want_rc || strcmp(err.text, want) != 0) {
            print_error("bad_cases.tsv:%d: got %d \"%s\", want %d \"%s\"\n", lineno, rc, err.text, want_rc, want);
            failed++;
        }
        assert_null(rs);
    }
    fclose(fp);
    assert_true(cases >= 40);
    assert_int_equal(failed, 0);
}

static char *big_doc(size_t rules, size_t actions, size_t keywords)
{
    size_t cap = 256 + rules * (128 + actions * 32 + keywords * 16), n;
    char *s = malloc(cap);

    n = (size_t)snprintf(s, cap, "{\"number\":\"+15005550006\",\"rules\":[");
    for (size_t i = 0; i < rules; i++) {
        n += (size_t)snprintf(s + n, cap - n, "%s{\"name\":\"r%zu\",\"when\":{\"keywords\":[", i ? "," : "", i);
        for (size_t k = 0; k < keywords; k++)
            n += (size_t)snprintf(s + n, cap - n, "%s\"K%zuX%zu\"", k ? "," : "", i, k);
        n += (size_t)snprintf(s + n, cap - n, "]},\"actions\":[");
        for (size_t a = 0; a < actions; a++)
            n += (size_t)snprintf(s + n, cap - n, "%s{\"type\":\"create-lead\"}", a ? "," : "");
        n += (size_t)snprintf(s + n, cap - n, "]}");
    }
    snprintf(s + n, cap - n, "]}");
    return s;
}

static void expect_err(const char *doc, size_t len, int want_rc, const char *want)
{
    routing_ruleset_t *rs = NULL;
    routing_error_t err;
    int rc = rules_compile(doc, len, &rs, &err);
    if (rc != want_rc || strcmp(err.text, want) != 0)
        fail_msg("got %d \"%s\", want %d \"%s\"", rc, err.text, want_rc, want);
    assert_null(rs);
}

static void test_caps(void **state)
{
    routing_ruleset_t *rs = NULL;
    routing_error_t err;
    char *doc, pat[ROUTING_MAX_PATTERN + 200];
    (void)state;

    doc = big_doc(ROUTING_MAX_RULES, 1, 1);
    assert_int_equal(rules_compile(doc, strlen(doc), &rs, &err), 0);
    assert_int_equal(rules_count(rs), ROUTING_MAX_RULES);
    rules_unref(rs);
    free(doc);
    doc = big_doc(ROUTING_MAX_RULES + 1, 1, 1);
    expect_err(doc, strlen(doc), ROUTING_ETOOBIG, "rules: 1001 rules, limit is 1000");
    free(doc);
    doc = big_doc(1, ROUTING_MAX_ACTIONS + 1, 1);
    expect_err(doc, strlen(doc), ROUTING_ETOOBIG, "rules[0].actions: 17 actions, limit is 16");
    free(doc);
    doc = big_doc(1, 1, ROUTING_MAX_KEYWORDS + 1);
    expect_err(doc, strlen(doc), ROUTING_ETOOBIG, "rules[0].when.keywords: 101 keywords, limit is 100");
    free(doc);
    doc = calloc(1, ROUTING_MAX_DOC + 2);
    memset(doc, ' ', ROUTING_MAX_DOC + 1);
    expect_err(doc, ROUTING_MAX_DOC + 1, ROUTING_ETOOBIG, "document is 1048577 bytes, limit is 1048576");
    free(doc);
    doc = malloc(ROUTING_MAX_PATTERN + 300);
    memset(pat, 'a', ROUTING_MAX_PATTERN + 1);
    pat[ROUTING_MAX_PATTERN + 1] = '\0';
    snprintf(doc, ROUTING_MAX_PATTERN + 300,
             "{\"number\":\"+15005550006\",\"rules\":[{\"name\":\"a\",\"when\":{\"regex\":\"%s\"},"
             "\"actions\":[{\"type\":\"opt-in\"}]}]}",
             pat);
    expect_err(doc, strlen(doc), ROUTING_ETOOBIG, "rules[0].when.regex: pattern is 1025 bytes, limit is 1024");
    free(doc);
    /* Not NUL-terminated: the length is what counts. */
    expect_err("{}garbage", 2, ROUTING_EINVALID, "the document needs \"number\" (E.164)");
    assert_int_equal(rules_compile(NULL, 0, &rs, &err), ROUTING_ESYNTAX);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/*
 * A catastrophic pattern on a hostile body returns quickly and reports the limit. The
 * bound (50 ms) is loose on purpose: it is a "does not stall" check, not a benchmark.
 */
static void test_catastrophic_regex_bounded(void **state)
{
    static const char *const patterns[] = {"(a+)+$", "^(a|a)*$", "(x+x+)+y", "^(\\\\w+\\\\s?)*$", "(a|aa)+$"};
    char body[4096], doc[1024];
    routing_decision_t d;
    routing_input_t in;
    (void)state;

    routing_decision_init(&d);
    memset(body, 'a', sizeof(body));
    body[sizeof(body) - 1] = '!';
    for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++) {
        routing_ruleset_t *rs = NULL;
        routing_error_t err;
        double t0, ms;

        snprintf(doc, sizeof(doc),
                 "{\"number\":\"+15005550006\",\"rules\":[{\"name\":\"evil\",\"when\":{\"regex\":\"%s\"},"
                 "\"actions\":[{\"type\":\"opt-in\"}]},{\"name\":\"rest\",\"when\":{\"any\":true},"
                 "\"actions\":[{\"type\":\"create-lead\"}]}]}",
                 patterns[i]);
        if (rules_compile(doc, strlen(doc), &rs, &err) != 0)
            fail_msg("%s: %s", patterns[i], err.text);
        memset(body, 'a', sizeof(body));
        body[sizeof(body) - 1] = '!';
        if (i == 2) {
            /* A 'y' at the very end defeats PCRE2's required-character shortcut. */
            memset(body, 'x', sizeof(body) - 2);
            body[sizeof(body) - 2] = '!';
            body[sizeof(body) - 1] = 'y';
        }
        input_for(&in, body, sizeof(body));
        t0 = now_ms();
        assert_int_equal(routing_evaluate(rs, &in, &d), 0);
        ms = now_ms() - t0;
        if (ms > 50 || !(d.flags & ROUTING_F_LIMIT_HIT) || d.n_matched != 1 || d.matched[0].index != 1)
            fail_msg("%s: %.1f ms, flags 0x%x, matched %zu", patterns[i], ms, d.flags, d.n_matched);
        assert_int_equal(d.n_limit_rules, 1);
        assert_int_equal(d.limit_rules[0], 0);
        rules_unref(rs);
    }
    routing_decision_close(&d);
}

/* Many hostile rules: after ROUTING_MAX_LIMIT_HITS the rest are skipped, so the total stays bounded. */
static void test_limit_budget(void **state)
{
    char *doc = malloc(65536), body[2048];
    size_t n;
    routing_ruleset_t *rs = NULL;
    routing_error_t err;
    routing_decision_t d;
    routing_input_t in;
    double t0, ms;
    (void)state;

    n = (size_t)snprintf(doc, 65536, "{\"number\":\"+15005550006\",\"rules\":[");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(doc + n, 65536 - n,
                              "{\"name\":\"evil%d\",\"when\":{\"regex\":\"(a+)+$\"},\"actions\":[{\"type\":\"opt-in\"}]},", i);
    snprintf(doc + n, 65536 - n, "{\"name\":\"rest\",\"when\":{\"any\":true},\"actions\":[{\"type\":\"create-lead\"}]}]}");
    assert_int_equal(rules_compile(doc, strlen(doc), &rs, &err), 0);
    memset(body, 'a', sizeof(body));
    body[sizeof(body) - 1] = '!';
    routing_decision_init(&d);
    input_for(&in, body, sizeof(body));
    t0 = now_ms();
    assert_int_equal(routing_evaluate(rs, &in, &d), 0);
    ms = now_ms() - t0;
    assert_true(ms < 200);
    assert_true(d.flags & ROUTING_F_LIMIT_HIT);
    assert_true(d.flags & ROUTING_F_BUDGET);
    assert_int_equal(d.n_limit_rules, ROUTING_MAX_LIMIT_HITS);
    assert_int_equal(d.n_matched, 1);
    assert_string_equal(d.matched[0].name, "rest");
    routing_decision_close(&d);
    rules_unref(rs);
    free(doc);
}

static void test_fold(void **state)
{
    static const struct {
        const char *in;
        int mode;
        const char *want;
    } cases[] = {
        {"JOIN", 0, "join"},
        {"Jóin", 0, "join"},
        {"INFORMACIÓN", 0, "informacion"},
        {"Straße", 0, "strasse"},
        {"\xEF\xBC\xAA\xEF\xBC\xAF\xEF\xBC\xA9\xEF\xBC\xAE", 0, "join"},
        {"Jo\xCC\x81in", 0, "join"},
        {"  ¿Qué?  hora ", 0, "que"},
        {"  ¿Qué?  hora! ", 1, "que? hora"},
        {"ÉCOLE\xE2\x80\x8B now", 0, "ecole"},
        {"Ǆ", 0, "dz"},
        {"ΣΊΣΥΦΟΣ", 0, "σισυφοσ"},
        {"!!!", 1, ""},
        {"", 0, ""},
        {"\xF0\x9F\x98\x80 hi", 0, "\xF0\x9F\x98\x80"},
    };
    char out[ROUTING_FOLD_MAX];
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int n = fold_text(cases[i].in, strlen(cases[i].in), (routing_keyword_match_t)cases[i].mode, out, sizeof(out));
        assert_true(n >= 0);
        if ((size_t)n != strlen(cases[i].want) || memcmp(out, cases[i].want, (size_t)n) != 0)
            fail_msg("fold(%s) = \"%.*s\", want \"%s\"", cases[i].in, n, out, cases[i].want);
    }
    memset(out, 'a', sizeof(out));
    assert_int_equal(fold_text(out, sizeof(out), ROUTING_MATCH_MESSAGE, out, 16), -1);
}

/*
 * The prefilter (minimum length, start bitmap, required byte) must never change an answer:
 * every pattern x body pair gives the same result as plain pcre2_match.
 */
static void test_prefilter_sound(void **state)
{
    static const char *const patterns[] = {
        "\\\\b(price|cost)\\\\b", "(?i)PRICE", "^hello", "world$", "colou?r", "[0-9]{5}", "(?m)^b",
        "(?<=a)b", "\\\\bCAFÉ\\\\b", "(?i)café", "(?i)ΣΟΦΙΑ", "x*", "a|ñ", "\\\\d+ ?(am|pm)", "(?i)q",
        "(?s)a.b", "(*NO_START_OPT)zz", "z{3}", "\\\\p{Lu}{2}", "(?i:É)t",
        /* literal-prefilter shapes */
        "(?i)sale", "(?i)kit", "https?://", "ab+c", "(?:foo|bar)baz", "x(?i)YZ", "\\\\.com\\\\b", "a{2,}b",
        "(order|track)\\\\s*#?\\\\d{4,}", "(?i)(order|track)\\\\s*#?\\\\d{4,}", "(a|)zq", "[kK]it|sale",
        "\\\\Qa.b\\\\E", "(?=sa)s", "ab{0}c",
    };
    static const char *const bodies[] = {
        "", "Price?", "what is the PRICE", "hello world", "Colour me", "zip 94107", "a\nb", "ab", "cafÉ",
        "CAFÉ au lait", "σοφια", "ñu", "at 5 pm", "Q", "a\nb", "xzzx", "zzz", "OK then", "ét", "Ét",
        "\xC5\xBF" "ale", "\xE2\x84\xAA" "IT", "http://x", "abbbc", "barbaz", "xYz", "go.com", "aab", "ORDER #12345",
        "track 99999", "zq", "a.b", "sale", "ac",
    };
    routing_decision_t d;
    (void)state;

    routing_decision_init(&d);
    for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++) {
        char doc[512], pat[128];
        routing_ruleset_t *rs = NULL;
        routing_error_t err;
        pcre2_code *code;
        pcre2_match_data *md = pcre2_match_data_create(1, NULL);
        int ec;
        PCRE2_SIZE eo;

        snprintf(doc, sizeof(doc),
                 "{\"number\":\"+15005550006\",\"rules\":[{\"name\":\"r\",\"when\":{\"regex\":\"%s\"},"
                 "\"actions\":[{\"type\":\"create-lead\"}]}]}",
                 patterns[i]);
        if (rules_compile(doc, strlen(doc), &rs, &err) != 0)
            fail_msg("%s: %s", patterns[i], err.text);
        /* The same pattern, unescaped from its JSON form. */
        {
            const char *s = patterns[i];
            size_t k = 0;
            while (*s) {
                if (s[0] == '\\' && s[1] == '\\')
                    s++;
                pat[k++] = *s++;
            }
            pat[k] = '\0';
        }
        code = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &ec, &eo, NULL);
        assert_non_null(code);
        for (size_t j = 0; j < sizeof(bodies) / sizeof(bodies[0]); j++) {
            routing_input_t in;
            int want = pcre2_match(code, (PCRE2_SPTR)bodies[j], strlen(bodies[j]), 0, 0, md, NULL) >= 0;
            input_for(&in, bodies[j], strlen(bodies[j]));
            assert_int_equal(routing_evaluate(rs, &in, &d), 0);
            if ((int)d.n_matched != want)
                fail_msg("/%s/ on \"%s\": engine %zu, pcre2 %d", pat, bodies[j], d.n_matched, want);
        }
        pcre2_code_free(code);
        pcre2_match_data_free(md);
        rules_unref(rs);
    }
    routing_decision_close(&d);
}

static void test_no_ruleset_and_args(void **state)
{
    routing_decision_t d;
    routing_input_t in;
    kw_result_t kw = {.cls = KW_HELP, .keyword = "HELP", .rule = "keyword"};
    (void)state;

    routing_decision_init(&d);
    input_for(&in, "hello", 5);
    assert_int_equal(routing_evaluate(NULL, &in, &d), 0);
    assert_true(d.flags & ROUTING_F_NO_RULES);
    assert_int_equal(d.n_actions, 0);
    /* A carrier result from the caller is used as given; org texts replace the defaults. */
    in.carrier = &kw;
    in.help_text = "Acme: call 555-0100.";
    assert_int_equal(routing_evaluate(NULL, &in, &d), 0);
    assert_int_equal(d.n_actions, 1);
    assert_int_equal(d.actions[0].type, ROUTING_ACT_HELP);
    assert_string_equal(d.actions[0].text, "Acme: call 555-0100.");
    /* An empty org text (a column set to '') is no text: the default is sent. */
    in.help_text = "";
    assert_int_equal(routing_evaluate(NULL, &in, &d), 0);
    assert_int_equal(d.n_actions, 1);
    assert_string_equal(d.actions[0].text, ROUTING_DEFAULT_HELP_TEXT);
    in.help_text = "Acme: call 555-0100.";
    assert_int_equal(routing_evaluate(NULL, NULL, &d), ROUTING_EARG);
    routing_decision_close(&d);
    memset(&d, 0, sizeof(d));
    assert_int_equal(routing_evaluate(NULL, &in, &d), ROUTING_EARG);
}

static void test_long_body(void **state)
{
    routing_ruleset_t *rs = load_set("main");
    routing_decision_t d;
    routing_input_t in;
    size_t n = ROUTING_MAX_BODY * 2;
    char *body = malloc(n);
    (void)state;

    memset(body, 'b', n);
    memcpy(body, "price ", 6);
    routing_decision_init(&d);
    input_for(&in, body, n);
    assert_int_equal(routing_evaluate(rs, &in, &d), 0);
    assert_true(d.flags & ROUTING_F_BODY_CUT);
    assert_string_equal(d.matched[0].name, "price");
    routing_decision_close(&d);
    rules_unref(rs);
    free(body);
}

static void test_registry_swap(void **state)
{
    routing_registry_t *reg = routing_registry_new();
    routing_ruleset_t *v1 = load_set("example"), *v2 = load_set("main"), *held, *now;
    routing_decision_t d;
    routing_input_t in;
    (void)state;

    rules_set_version(v1, 1);
    rules_set_version(v2, 2);
    assert_null(routing_registry_acquire(reg, 1, "+15005550006"));
    assert_int_equal(routing_registry_swap(reg, 1, "+15005550006", v1), 0);
    held = routing_registry_acquire(reg, 1, "+15005550006");
    assert_ptr_equal(held, v1);
    assert_null(routing_registry_acquire(reg, 2, "+15005550006"));
    /* Reload while a message holds v1: it finishes on v1, new messages see v2. */
    assert_int_equal(routing_registry_swap(reg, 1, "+15005550006", v2), 0);
    routing_decision_init(&d);
    input_for(&in, "hello", 5);
    assert_int_equal(routing_evaluate(held, &in, &d), 0);
    assert_string_equal(d.actions[1].text, "hello");
    rules_unref(held);
    now = routing_registry_acquire(reg, 1, "+15005550006");
    assert_int_equal(rules_version(now), 2);
    assert_int_equal(routing_evaluate(now, &in, &d), 0);
    assert_string_equal(d.actions[1].text, "[+14155550123] hello");
    rules_unref(now);
    assert_int_equal(routing_registry_swap(reg, 1, "+15005550006", NULL), 0);
    assert_null(routing_registry_acquire(reg, 1, "+15005550006"));
    routing_decision_close(&d);
    routing_registry_free(reg);
}

static void test_json_views(void **state)
{
    routing_ruleset_t *rs = load_set("main");
    routing_decision_t d;
    routing_input_t in;
    json_t *j;
    char *s;
    (void)state;

    routing_decision_init(&d);
    input_for(&in, "demo", 4);
    assert_int_equal(routing_evaluate(rs, &in, &d), 0);
    j = routing_decision_to_json(&d);
    s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(strstr(s, "\"event\":\"demo.requested\""));
    assert_non_null(strstr(s, "\"signed\":true"));
    assert_null(strstr(s, "s3cret"));
    assert_non_null(strstr(s, "\"matched\":[{\"index\":6,\"name\":\"demo\"}]"));
    free(s);
    json_decref(j);
    in.body = "STOP";
    in.body_len = 4;
    in.form = "signup";
    assert_int_equal(routing_evaluate(rs, &in, &d), 0);
    j = routing_decision_to_json(&d);
    s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(strstr(s, "\"form\":{\"op\":\"clear\"}"));
    assert_non_null(strstr(s, "\"keyword\":\"STOP\""));
    free(s);
    json_decref(j);
    routing_decision_close(&d);
    rules_unref(rs);
}

static void test_example_file_valid(void **state)
{
    char path[1024];
    routing_ruleset_t *rs = NULL;
    routing_error_t err;
    size_t len;
    char *doc;
    (void)state;

    snprintf(path, sizeof(path), "%s/../../examples/rules.json", HERALD_TEST_DATA_DIR);
    doc = read_file(path, &len);
    assert_non_null(doc);
    if (rules_compile(doc, len, &rs, &err) != 0)
        fail_msg("%s", err.text);
    assert_string_equal(rules_number(rs), "+15005550006");
    assert_int_equal(rules_count(rs), 4);
    rules_unref(rs);
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases_table),
        cmocka_unit_test(test_bad_documents),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_catastrophic_regex_bounded),
        cmocka_unit_test(test_limit_budget),
        cmocka_unit_test(test_fold),
        cmocka_unit_test(test_prefilter_sound),
        cmocka_unit_test(test_no_ruleset_and_args),
        cmocka_unit_test(test_long_body),
        cmocka_unit_test(test_registry_swap),
        cmocka_unit_test(test_json_views),
        cmocka_unit_test(test_example_file_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
