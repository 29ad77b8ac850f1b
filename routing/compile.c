/*
 * rules_compile(): turns a rule-set document into an immutable, refcounted
 * routing_ruleset_t. Validation is strict (unknown keys are errors, so a typo cannot
 * silently disable a rule) and every error names the JSON path of the bad node and the
 * reason. Regexes are compiled and JIT-compiled here, once; keywords are folded once
 * into a hash index; reply texts are parsed into merge-field templates. Everything the
 * set owns lives in one arena, apart from the PCRE2 codes and the index arrays.
 */
#include "routing/routing_int.h"
#include "common/xalloc.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_CHUNK 16384

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(16) char data[];
};

typedef struct cctx {
    routing_ruleset_t *rs;
    routing_error_t *err;
    const char **forms; /* form names seen, for uniqueness */
    size_t n_forms;
} cctx_t;

static void *arena_alloc(routing_ruleset_t *rs, size_t n)
{
    struct arena_chunk *c = rs->arena;

    n = (n + 15) & ~(size_t)15;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        c = xmalloc(sizeof(*c) + cap);
        c->cap = cap;
        c->used = 0;
        c->next = rs->arena;
        rs->arena = c;
    }
    c->used += n;
    return c->data + c->used - n;
}

static const char *arena_strndup(routing_ruleset_t *rs, const char *s, size_t n)
{
    char *p = arena_alloc(rs, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static __attribute__((format(printf, 4, 5))) int fail(cctx_t *c, int code, const char *path, const char *fmt, ...)
{
    routing_error_t *e = c->err;
    va_list ap;

    if (!e)
        return code;
    memset(e, 0, sizeof(*e));
    snprintf(e->path, sizeof(e->path), "%s", path);
    va_start(ap, fmt);
    vsnprintf(e->reason, sizeof(e->reason), fmt, ap);
    va_end(ap);
    if (path[0])
        snprintf(e->text, sizeof(e->text), "%s: %s", e->path, e->reason);
    else
        snprintf(e->text, sizeof(e->text), "%s", e->reason);
    return code;
}

static size_t utf8_chars(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

static int has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
            return 1;
    return 0;
}

static int is_ident(const char *s, size_t n)
{
    if (n == 0 || n > 64 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    return 1;
}

static int is_e164(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return 0;
    return strspn(s + 1, "0123456789") == n - 1;
}

static int is_url(const char *s)
{
    const char *host;
    size_t n = strlen(s);

    if (strncmp(s, "https://", 8) == 0)
        host = s + 8;
    else if (strncmp(s, "http://", 7) == 0)
        host = s + 7;
    else
        return 0;
    if (n > ROUTING_MAX_URL || *host == '\0' || *host == '/' || has_control(s, n))
        return 0;
    return strpbrk(s, " \"<>\\^`{|}") == NULL;
}

/* Rejects keys of obj not in allowed (NULL-terminated). what: "" or " for auto-reply". */
static int check_keys(cctx_t *c, json_t *obj, const char *path, const char *const *allowed, const char *noun,
                      const char *what)
{
    const char *key;
    json_t *v;

    json_object_foreach(obj, key, v) {
        size_t i;
        for (i = 0; allowed[i]; i++)
            if (strcmp(key, allowed[i]) == 0)
                break;
        if (!allowed[i])
            return fail(c, ROUTING_EINVALID, path, "unknown %s \"%.60s\"%s", noun, key, what);
    }
    return 0;
}

/*
 * Reads the string member key of obj into *out (borrowed from the JSON) and its length.
 * required: missing is an error, phrased with hint ("forward-sms needs \"to\" (E.164)").
 */
static int get_str(cctx_t *c, json_t *obj, const char *path, const char *key, int required, const char *needs,
                   const char **out, size_t *len)
{
    json_t *v = json_object_get(obj, key);
    char p[200];

    *out = NULL;
    *len = 0;
    if (!v) {
        if (!required)
            return 0;
        if (needs)
            return fail(c, ROUTING_EINVALID, path, "%s", needs);
        return fail(c, ROUTING_EINVALID, path, "needs \"%s\"", key);
    }
    snprintf(p, sizeof(p), "%s.%s", path, key);
    if (!json_is_string(v))
        return fail(c, ROUTING_EINVALID, p, "must be a string");
    *out = json_string_value(v);
    *len = json_string_length(v);
    if (*len == 0)
        return fail(c, ROUTING_EINVALID, p, "must not be empty");
    return 0;
}

static int check_name(cctx_t *c, const char *path, const char *key, const char *s, size_t n)
{
    char p[200];
    snprintf(p, sizeof(p), "%s.%s", path, key);
    if (n > ROUTING_MAX_NAME)
        return fail(c, ROUTING_ETOOBIG, p, "%zu bytes, limit is %d", n, ROUTING_MAX_NAME);
    if (has_control(s, n))
        return fail(c, ROUTING_EINVALID, p, "must not contain control characters");
    return 0;
}

/* Parses a text with {{field}} / {{field|default}} merge fields into a template. */
static int compile_tmpl(cctx_t *c, const char *path, const char *src, size_t n, const routing_tmpl_t **out)
{
    routing_ruleset_t *rs = c->rs;
    routing_tmpl_t *t = NULL;
    size_t nseg = 0, i, start;

    *out = NULL;
    if (utf8_chars(src, n) > ROUTING_MAX_TEXT)
        return fail(c, ROUTING_ETOOBIG, path, "%zu characters, limit is %d", utf8_chars(src, n), ROUTING_MAX_TEXT);
    /* First pass validates and counts, the second fills. */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            t = arena_alloc(rs, sizeof(*t));
            t->segs = arena_alloc(rs, (nseg ? nseg : 1) * sizeof(tmpl_seg_t));
            t->n = 0;
        }
        nseg = 0;
        start = 0;
        for (i = 0; i < n;) {
            const char *close, *bar, *name;
            size_t nlen;

            if (!(src[i] == '{' && i + 1 < n && src[i + 1] == '{')) {
                i++;
                continue;
            }
            if (i > start) {
                if (pass == 1)
                    t->segs[t->n++] = (tmpl_seg_t){.lit = src + start, .lit_len = i - start};
                nseg++;
            }
            close = strstr(src + i + 2, "}}");
            if (!close)
                return fail(c, ROUTING_EINVALID, path, "unclosed \"{{\" at offset %zu", i);
            name = src + i + 2;
            bar = memchr(name, '|', (size_t)(close - name));
            nlen = (size_t)((bar ? bar : close) - name);
            while (nlen && name[0] == ' ') {
                name++;
                nlen--;
            }
            while (nlen && name[nlen - 1] == ' ')
                nlen--;
            if (!is_ident(name, nlen))
                return fail(c, ROUTING_EINVALID, path, "bad merge field \"%.*s\" at offset %zu",
                            (int)((close + 2 - src - i) > 80 ? 80 : (close + 2 - src - i)), src + i, i);
            if (pass == 1) {
                tmpl_seg_t *s = &t->segs[t->n++];
                *s = (tmpl_seg_t){.field = arena_strndup(rs, name, nlen)};
                if (bar)
                    s->def = arena_strndup(rs, bar + 1, (size_t)(close - bar - 1));
            }
            nseg++;
            i = (size_t)(close - src) + 2;
            start = i;
        }
        if (n > start) {
            if (pass == 1)
                t->segs[t->n++] = (tmpl_seg_t){.lit = src + start, .lit_len = n - start};
            nseg++;
        }
    }
    /* Literal segments point into the JSON; move them into the arena. */
    for (i = 0; i < t->n; i++)
        if (t->segs[i].lit)
            t->segs[i].lit = arena_strndup(rs, t->segs[i].lit, t->segs[i].lit_len);
    *out = t;
    return 0;
}

static int get_text(cctx_t *c, json_t *obj, const char *path, const char *key, int required, const char *needs,
                    const char **out, const routing_tmpl_t **tmpl)
{
    const char *s;
    size_t n;
    char p[200];
    int rc;

    *out = NULL;
    *tmpl = NULL;
    if ((rc = get_str(c, obj, path, key, required, needs, &s, &n)) != 0 || !s)
        return rc;
    snprintf(p, sizeof(p), "%s.%s", path, key);
    if ((rc = compile_tmpl(c, p, s, n, tmpl)) != 0)
        return rc;
    *out = arena_strndup(c->rs, s, n);
    return 0;
}

static void track_rx(routing_ruleset_t *rs, routing_rx_t *rx)
{
    if (rs->n_rxs == rs->cap_rxs) {
        rs->cap_rxs = rs->cap_rxs ? rs->cap_rxs * 2 : 16;
        rs->rxs = xrealloc(rs->rxs, rs->cap_rxs * sizeof(*rs->rxs));
    }
    rs->rxs[rs->n_rxs++] = rx;
}

static int compile_rx(cctx_t *c, const char *path, const char *src, size_t n, const char *flags_path,
                      const char *flags, routing_rx_t **out)
{
    uint32_t opts = PCRE2_UTF | PCRE2_NEVER_BACKSLASH_C, type = 0, unit = 0;
    pcre2_compile_context *cc;
    routing_rx_t *rx;
    const uint8_t *bm = NULL;
    PCRE2_SIZE erroff = 0;
    int errcode = 0;

    *out = NULL;
    if (n > ROUTING_MAX_PATTERN)
        return fail(c, ROUTING_ETOOBIG, path, "pattern is %zu bytes, limit is %d", n, ROUTING_MAX_PATTERN);
    for (const char *f = flags ? flags : ""; *f; f++) {
        switch (*f) {
        case 'i': opts |= PCRE2_CASELESS; break;
        case 'm': opts |= PCRE2_MULTILINE; break;
        case 's': opts |= PCRE2_DOTALL; break;
        case 'x': opts |= PCRE2_EXTENDED; break;
        case 'u': opts |= PCRE2_UCP; break;
        default:
            if ((unsigned char)*f >= 0x20 && (unsigned char)*f < 0x7F)
                return fail(c, ROUTING_EINVALID, flags_path, "unknown flag \"%c\" (known: i m s x u)", *f);
            return fail(c, ROUTING_EINVALID, flags_path, "unknown flag (known: i m s x u)");
        }
    }
    cc = pcre2_compile_context_create(NULL);
    if (!cc)
        abort();
    pcre2_set_parens_nest_limit(cc, 64);
    rx = xcalloc(1, sizeof(*rx));
    rx->req = -1;
    rx->code = pcre2_compile((PCRE2_SPTR)src, n, opts, &errcode, &erroff, cc);
    pcre2_compile_context_free(cc);
    if (!rx->code) {
        PCRE2_UCHAR msg[160];
        free(rx);
        if (pcre2_get_error_message(errcode, msg, sizeof(msg)) < 0)
            snprintf((char *)msg, sizeof(msg), "error %d", errcode);
        return fail(c, ROUTING_EINVALID, path, "%s at offset %zu", (const char *)msg, (size_t)erroff);
    }
    track_rx(c->rs, rx);
    /* Without JIT (unsupported platform) the interpreter runs with the same limits. */
    if (pcre2_jit_compile(rx->code, PCRE2_JIT_COMPLETE) == 0) {
        size_t jitsize = 0;
        rx->jit = pcre2_pattern_info(rx->code, PCRE2_INFO_JITSIZE, &jitsize) == 0 && jitsize > 0;
    }

    /*
     * Start-of-match facts PCRE2 already derived, kept for a cheap per-message
     * prefilter. Only facts that hold whatever the pattern's inline options are used:
     * the start bitmap, and first/required code units when they are ASCII (both cases
     * are admitted, since an inline (?i) is not visible here).
     */
    pcre2_pattern_info(rx->code, PCRE2_INFO_MINLENGTH, &rx->minlen);
    pcre2_pattern_info(rx->code, PCRE2_INFO_FIRSTBITMAP, &bm);
    pcre2_pattern_info(rx->code, PCRE2_INFO_FIRSTCODETYPE, &type);
    if (bm) {
        memcpy(rx->first, bm, 32);
        rx->use_bitmap = 1;
    } else if (type == 1 && pcre2_pattern_info(rx->code, PCRE2_INFO_FIRSTCODEUNIT, &unit) == 0 && unit < 128) {
        rx->first[unit >> 3] |= (uint8_t)(1u << (unit & 7));
        if (isalpha((int)unit)) {
            unsigned o = (unsigned)(unit ^ 0x20);
            rx->first[o >> 3] |= (uint8_t)(1u << (o & 7));
        }
        rx->use_bitmap = 1;
    }
    type = 0;
    if (pcre2_pattern_info(rx->code, PCRE2_INFO_LASTCODETYPE, &type) == 0 && type == 1 &&
        pcre2_pattern_info(rx->code, PCRE2_INFO_LASTCODEUNIT, &unit) == 0 && unit < 128)
        rx->req = (int)unit;
    *out = rx;
    return 0;
}

static int kw_insert(routing_ruleset_t *rs, kw_index_t *ix, const char *key, size_t len, int rule)
{
    uint32_t h = fold_hash(key, len);
    kw_entry_t *e;
    size_t mask, i;

    if ((ix->used + 1) * 2 > ix->cap) {
        kw_index_t big = {.cap = ix->cap ? ix->cap * 2 : 64};
        big.slots = xcalloc(big.cap, sizeof(kw_entry_t));
        for (i = 0; i < ix->cap; i++) {
            kw_entry_t *o = &ix->slots[i];
            size_t j;
            if (!o->key)
                continue;
            for (j = o->hash & (big.cap - 1); big.slots[j].key; j = (j + 1) & (big.cap - 1))
                ;
            big.slots[j] = *o;
        }
        big.used = ix->used;
        free(ix->slots);
        *ix = big;
    }
    mask = ix->cap - 1;
    for (i = h & mask;; i = (i + 1) & mask) {
        e = &ix->slots[i];
        if (!e->key) {
            e->key = arena_strndup(rs, key, len);
            e->len = len;
            e->hash = h;
            ix->used++;
            break;
        }
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
            break;
    }
    if (e->n && e->rules[e->n - 1] == rule)
        return 0; /* the same keyword twice in one rule */
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 4;
        e->rules = xrealloc(e->rules, e->cap * sizeof(int));
    }
    e->rules[e->n++] = rule;
    return 0;
}

static int compile_when(cctx_t *c, json_t *when, const char *rpath, rule_t *r, int index)
{
    static const char *const allowed[] = {"keywords", "match", "regex", "flags", "any", NULL};
    char path[200], p[220];
    json_t *kw = json_object_get(when, "keywords"), *rx = json_object_get(when, "regex"),
           *any = json_object_get(when, "any"), *match = json_object_get(when, "match"),
           *flags = json_object_get(when, "flags");
    int kinds = (kw != NULL) + (rx != NULL) + (any != NULL), rc;

    snprintf(path, sizeof(path), "%s.when", rpath);
    if (!json_is_object(when))
        return fail(c, ROUTING_EINVALID, path, "must be an object");
    if ((rc = check_keys(c, when, path, allowed, "key", "")) != 0)
        return rc;
    if (kinds != 1)
        return fail(c, ROUTING_EINVALID, path, "needs exactly one of \"keywords\", \"regex\" or \"any\"");
    if (match && !kw)
        return fail(c, ROUTING_EINVALID, path, "\"match\" goes with \"keywords\"");
    if (flags && !rx)
        return fail(c, ROUTING_EINVALID, path, "\"flags\" goes with \"regex\"");
    if (any) {
        snprintf(p, sizeof(p), "%s.any", path);
        if (!json_is_true(any))
            return fail(c, ROUTING_EINVALID, p, "must be true");
        r->kind = WHEN_ANY;
        return 0;
    }
    if (rx) {
        char fp[220];
        snprintf(p, sizeof(p), "%s.regex", path);
        snprintf(fp, sizeof(fp), "%s.flags", path);
        if (!json_is_string(rx) || json_string_length(rx) == 0)
            return fail(c, ROUTING_EINVALID, p, "must be a non-empty string");
        if (flags && !json_is_string(flags))
            return fail(c, ROUTING_EINVALID, fp, "must be a string");
        r->kind = WHEN_REGEX;
        c->rs->any_regex = 1;
        r->src = arena_strndup(c->rs, json_string_value(rx), json_string_length(rx));
        r->flags = flags ? arena_strndup(c->rs, json_string_value(flags), json_string_length(flags)) : NULL;
        return compile_rx(c, p, json_string_value(rx), json_string_length(rx), fp,
                          flags ? json_string_value(flags) : NULL, &r->rx);
    }
    r->kind = WHEN_KEYWORDS;
    r->match = ROUTING_MATCH_FIRST_WORD;
    if (match) {
        snprintf(p, sizeof(p), "%s.match", path);
        if (json_is_string(match) && strcmp(json_string_value(match), "message") == 0)
            r->match = ROUTING_MATCH_MESSAGE;
        else if (!(json_is_string(match) && strcmp(json_string_value(match), "first-word") == 0))
            return fail(c, ROUTING_EINVALID, p, "must be \"first-word\" or \"message\"");
    }
    snprintf(p, sizeof(p), "%s.keywords", path);
    if (!json_is_array(kw) || json_array_size(kw) == 0)
        return fail(c, ROUTING_EINVALID, p, "must be a non-empty array of strings");
    if (json_array_size(kw) > ROUTING_MAX_KEYWORDS)
        return fail(c, ROUTING_ETOOBIG, p, "%zu keywords, limit is %d", json_array_size(kw), ROUTING_MAX_KEYWORDS);
    for (size_t i = 0; i < json_array_size(kw); i++) {
        json_t *k = json_array_get(kw, i);
        char kp[256], folded[ROUTING_FOLD_MAX];
        const char *s;
        size_t n;
        int fl;

        snprintf(kp, sizeof(kp), "%s[%zu]", p, i);
        if (!json_is_string(k))
            return fail(c, ROUTING_EINVALID, kp, "must be a string");
        s = json_string_value(k);
        n = json_string_length(k);
        if (n > ROUTING_MAX_KEYWORD_BYTES)
            return fail(c, ROUTING_ETOOBIG, kp, "%zu bytes, limit is %d", n, ROUTING_MAX_KEYWORD_BYTES);
        fl = fold_text(s, n, ROUTING_MATCH_MESSAGE, folded, sizeof(folded));
        if (fl <= 0)
            return fail(c, ROUTING_EINVALID, kp, "\"%s\" has no letters or digits", s);
        if (r->match == ROUTING_MATCH_FIRST_WORD && memchr(folded, ' ', (size_t)fl))
            return fail(c, ROUTING_EINVALID, kp, "\"%s\" is more than one word; use \"match\": \"message\"", s);
        kw_insert(c->rs, &c->rs->kw[r->match], folded, (size_t)fl, index);
        if ((size_t)fl > c->rs->kw_maxlen[r->match])
            c->rs->kw_maxlen[r->match] = (size_t)fl;
    }
    return 0;
}

static const char *const action_names[ROUTING_ACT__COUNT] = {
    "auto-reply", "go-to-flow", "fill-form",  "forward-sms", "ai-assistant", "trigger-automation", "create-lead",
    "add-tag",    "remove-tag", "opt-out",    "opt-in",      "help",         "form-answer",        "form-reprompt",
};

const char *routing_action_name(routing_action_type_t type)
{
    if ((unsigned)type >= ROUTING_ACT__COUNT)
        return "?";
    return action_names[type];
}

static int compile_form(cctx_t *c, json_t *a, const char *path, routing_action_t *act)
{
    routing_ruleset_t *rs = c->rs;
    json_t *fields = json_object_get(a, "fields");
    routing_form_field_t *ff;
    const char *s;
    size_t n, nf;
    char p[220];
    int rc;

    if ((rc = get_str(c, a, path, "form", 1, "fill-form needs \"form\" (a name)", &s, &n)) != 0 ||
        (rc = check_name(c, path, "form", s, n)) != 0)
        return rc;
    for (size_t i = 0; i < c->n_forms; i++)
        if (strcmp(c->forms[i], s) == 0)
            return fail(c, ROUTING_EINVALID, path, "form \"%s\" is defined twice", s);
    act->u.form.form = arena_strndup(rs, s, n);
    c->forms = xrealloc(c->forms, (c->n_forms + 1) * sizeof(*c->forms));
    c->forms[c->n_forms++] = act->u.form.form;
    snprintf(p, sizeof(p), "%s.fields", path);
    if (!fields)
        return fail(c, ROUTING_EINVALID, path, "fill-form needs \"fields\" (an array)");
    if (!json_is_array(fields) || json_array_size(fields) == 0)
        return fail(c, ROUTING_EINVALID, p, "must be a non-empty array");
    nf = json_array_size(fields);
    if (nf > ROUTING_MAX_FIELDS)
        return fail(c, ROUTING_ETOOBIG, p, "%zu fields, limit is %d", nf, ROUTING_MAX_FIELDS);
    ff = arena_alloc(rs, nf * sizeof(*ff));
    memset(ff, 0, nf * sizeof(*ff));
    for (size_t i = 0; i < nf; i++) {
        static const char *const allowed[] = {"name", "prompt", "pattern", "error", NULL};
        json_t *f = json_array_get(fields, i);
        char fp[240], pp[260];
        routing_rx_t *rx;

        snprintf(fp, sizeof(fp), "%s[%zu]", p, i);
        if (!json_is_object(f))
            return fail(c, ROUTING_EINVALID, fp, "must be an object");
        if ((rc = check_keys(c, f, fp, allowed, "field", " for a form field")) != 0)
            return rc;
        if ((rc = get_str(c, f, fp, "name", 1, NULL, &s, &n)) != 0)
            return rc;
        snprintf(pp, sizeof(pp), "%s.name", fp);
        if (!is_ident(s, n))
            return fail(c, ROUTING_EINVALID, pp, "\"%.64s\" is not a name (letters, digits, _)", s);
        for (size_t j = 0; j < i; j++)
            if (strcmp(ff[j].name, s) == 0)
                return fail(c, ROUTING_EINVALID, pp, "\"%s\" is asked twice", s);
        ff[i].name = arena_strndup(rs, s, n);
        if ((rc = get_text(c, f, fp, "prompt", 1, NULL, &ff[i].prompt, &ff[i].prompt_tmpl)) != 0 ||
            (rc = get_text(c, f, fp, "error", 0, NULL, &ff[i].error, &ff[i].error_tmpl)) != 0 ||
            (rc = get_str(c, f, fp, "pattern", 1, NULL, &s, &n)) != 0)
            return rc;
        snprintf(pp, sizeof(pp), "%s.pattern", fp);
        if ((rc = compile_rx(c, pp, s, n, pp, NULL, &rx)) != 0)
            return rc;
        ff[i].pattern = arena_strndup(rs, s, n);
        ff[i].rx = rx;
    }
    act->u.form.fields = ff;
    act->u.form.n_fields = nf;
    return get_text(c, a, path, "done", 1, "fill-form needs \"done\" (the closing text)", &act->u.form.done,
                    &act->u.form.done_tmpl);
}

static int get_url(cctx_t *c, json_t *a, const char *path, const char *key, int required, const char *needs,
                   const char **out)
{
    const char *s;
    size_t n;
    char p[220];
    int rc;

    *out = NULL;
    if ((rc = get_str(c, a, path, key, required, needs, &s, &n)) != 0 || !s)
        return rc;
    snprintf(p, sizeof(p), "%s.%s", path, key);
    if (!is_url(s))
        return fail(c, ROUTING_EINVALID, p, "\"%.80s\" is not an http(s) URL", s);
    *out = arena_strndup(c->rs, s, n);
    return 0;
}

static int get_name(cctx_t *c, json_t *a, const char *path, const char *key, int required, const char *needs,
                    const char **out)
{
    const char *s;
    size_t n;
    int rc;

    *out = NULL;
    if ((rc = get_str(c, a, path, key, required, needs, &s, &n)) != 0 || !s)
        return rc;
    if ((rc = check_name(c, path, key, s, n)) != 0)
        return rc;
    *out = arena_strndup(c->rs, s, n);
    return 0;
}

static int compile_action(cctx_t *c, json_t *a, const char *path, routing_action_t *act)
{
    static const char *const fields[ROUTING_ACT_OPT_IN + 1][6] = {
        [ROUTING_ACT_AUTO_REPLY] = {"body", "mode"},
        [ROUTING_ACT_GO_TO_FLOW] = {"flow", "endpoint"},
        [ROUTING_ACT_FILL_FORM] = {"form", "fields", "done"},
        [ROUTING_ACT_FORWARD_SMS] = {"to", "prefix"},
        [ROUTING_ACT_AI_ASSISTANT] = {"endpoint", "timeout_ms", "prompt"},
        [ROUTING_ACT_TRIGGER_AUTOMATION] = {"url", "event", "secret"},
        [ROUTING_ACT_CREATE_LEAD] = {"source"},
        [ROUTING_ACT_ADD_TAG] = {"tag"},
        [ROUTING_ACT_REMOVE_TAG] = {"tag"},
    };
    const char *allowed[8] = {"type"}, *tname, *s;
    json_t *type = json_object_get(a, "type");
    char p[220], what[64];
    size_t n;
    int t, rc;

    if (!json_is_object(a))
        return fail(c, ROUTING_EINVALID, path, "must be an object");
    snprintf(p, sizeof(p), "%s.type", path);
    if (!type)
        return fail(c, ROUTING_EINVALID, path, "needs \"type\"");
    if (!json_is_string(type))
        return fail(c, ROUTING_EINVALID, p, "must be a string");
    tname = json_string_value(type);
    for (t = 0; t <= ROUTING_ACT_OPT_IN; t++)
        if (strcmp(tname, action_names[t]) == 0)
            break;
    if (t > ROUTING_ACT_OPT_IN)
        return fail(c, ROUTING_EINVALID, p, "unknown action \"%.60s\"", tname);
    act->type = (routing_action_type_t)t;
    for (int i = 0; i < 6 && fields[t][i]; i++)
        allowed[i + 1] = fields[t][i];
    snprintf(what, sizeof(what), " for %s", tname);
    if ((rc = check_keys(c, a, path, allowed, "field", what)) != 0)
        return rc;

    switch (act->type) {
    case ROUTING_ACT_AUTO_REPLY: {
        json_t *mode = json_object_get(a, "mode");
        if ((rc = get_text(c, a, path, "body", 1, "auto-reply needs \"body\" (the reply text)", &act->u.reply.body,
                           &act->u.reply.tmpl)) != 0)
            return rc;
        act->u.reply.mode = ROUTING_REPLY_TWIML;
        if (mode) {
            snprintf(p, sizeof(p), "%s.mode", path);
            if (json_is_string(mode) && strcmp(json_string_value(mode), "queued") == 0)
                act->u.reply.mode = ROUTING_REPLY_QUEUED;
            else if (!(json_is_string(mode) && strcmp(json_string_value(mode), "twiml") == 0))
                return fail(c, ROUTING_EINVALID, p, "must be \"twiml\" or \"queued\"");
        }
        return 0;
    }
    case ROUTING_ACT_GO_TO_FLOW:
        if ((rc = get_name(c, a, path, "flow", 1, "go-to-flow needs \"flow\" (a name)", &act->u.flow.flow)) != 0)
            return rc;
        return get_url(c, a, path, "endpoint", 0, NULL, &act->u.flow.endpoint);
    case ROUTING_ACT_FILL_FORM:
        return compile_form(c, a, path, act);
    case ROUTING_ACT_FORWARD_SMS:
        if ((rc = get_str(c, a, path, "to", 1, "forward-sms needs \"to\" (E.164)", &s, &n)) != 0)
            return rc;
        snprintf(p, sizeof(p), "%s.to", path);
        if (!is_e164(s))
            return fail(c, ROUTING_EINVALID, p, "\"%.40s\" is not E.164 (+ and up to 15 digits)", s);
        act->u.forward.to = arena_strndup(c->rs, s, n);
        return get_text(c, a, path, "prefix", 0, NULL, &act->u.forward.prefix, &act->u.forward.prefix_tmpl);
    case ROUTING_ACT_AI_ASSISTANT: {
        json_t *to = json_object_get(a, "timeout_ms");
        if ((rc = get_url(c, a, path, "endpoint", 1, "ai-assistant needs \"endpoint\" (a URL)", &act->u.ai.endpoint)) !=
            0)
            return rc;
        act->u.ai.timeout_ms = 10000;
        if (to) {
            snprintf(p, sizeof(p), "%s.timeout_ms", path);
            if (!json_is_integer(to) || json_integer_value(to) < 100 || json_integer_value(to) > 120000)
                return fail(c, ROUTING_EINVALID, p, "must be an integer from 100 to 120000");
            act->u.ai.timeout_ms = (unsigned)json_integer_value(to);
        }
        if ((rc = get_str(c, a, path, "prompt", 0, NULL, &s, &n)) != 0)
            return rc;
        if (s) {
            snprintf(p, sizeof(p), "%s.prompt", path);
            if (utf8_chars(s, n) > 4 * ROUTING_MAX_TEXT)
                return fail(c, ROUTING_ETOOBIG, p, "%zu characters, limit is %d", utf8_chars(s, n),
                            4 * ROUTING_MAX_TEXT);
            act->u.ai.prompt = arena_strndup(c->rs, s, n);
        }
        return 0;
    }
    case ROUTING_ACT_TRIGGER_AUTOMATION:
        if ((rc = get_url(c, a, path, "url", 1, "trigger-automation needs \"url\"", &act->u.automation.url)) != 0 ||
            (rc = get_name(c, a, path, "event", 1, "trigger-automation needs \"event\" (a name)",
                           &act->u.automation.event)) != 0 ||
            (rc = get_str(c, a, path, "secret", 0, NULL, &s, &n)) != 0)
            return rc;
        if (s) {
            snprintf(p, sizeof(p), "%s.secret", path);
            if (n > 256 || has_control(s, n))
                return fail(c, ROUTING_EINVALID, p, "must be at most 256 printable bytes");
            act->u.automation.secret = arena_strndup(c->rs, s, n);
        }
        return 0;
    case ROUTING_ACT_CREATE_LEAD:
        return get_name(c, a, path, "source", 0, NULL, &act->u.lead.source);
    case ROUTING_ACT_ADD_TAG:
    case ROUTING_ACT_REMOVE_TAG:
        snprintf(what, sizeof(what), "%s needs \"tag\"", tname);
        if ((rc = get_str(c, a, path, "tag", 1, what, &s, &n)) != 0)
            return rc;
        snprintf(p, sizeof(p), "%s.tag", path);
        if (n > 64 || has_control(s, n) || strchr(s, ',') || s[0] == ' ' || s[n - 1] == ' ')
            return fail(c, ROUTING_EINVALID, p, "a tag is 1-64 bytes, no commas, control characters or edge spaces");
        act->u.tag.tag = arena_strndup(c->rs, s, n);
        return 0;
    default:
        return 0;
    }
}

static int compile_rule(cctx_t *c, json_t *jr, size_t index, rule_t *r)
{
    static const char *const allowed[] = {"name", "description", "when", "continue", "actions", NULL};
    json_t *cont = json_object_get(jr, "continue"), *acts = json_object_get(jr, "actions");
    char path[64], p[100];
    const char *s;
    size_t n;
    int rc;

    snprintf(path, sizeof(path), "rules[%zu]", index);
    if (!json_is_object(jr))
        return fail(c, ROUTING_EINVALID, path, "must be an object");
    if ((rc = check_keys(c, jr, path, allowed, "key", "")) != 0)
        return rc;
    if ((rc = get_str(c, jr, path, "name", 1, NULL, &s, &n)) != 0 || (rc = check_name(c, path, "name", s, n)) != 0)
        return rc;
    for (size_t i = 0; i < index; i++)
        if (strcmp(c->rs->rules[i].name, s) == 0) {
            snprintf(p, sizeof(p), "%s.name", path);
            return fail(c, ROUTING_EINVALID, p, "\"%s\" is also the name of rules[%zu]", s, i);
        }
    r->name = arena_strndup(c->rs, s, n);
    if (!json_object_get(jr, "when"))
        return fail(c, ROUTING_EINVALID, path, "needs \"when\"");
    if ((rc = compile_when(c, json_object_get(jr, "when"), path, r, (int)index)) != 0)
        return rc;
    if (cont) {
        snprintf(p, sizeof(p), "%s.continue", path);
        if (!json_is_boolean(cont))
            return fail(c, ROUTING_EINVALID, p, "must be true or false");
        r->cont = json_is_true(cont);
    }
    snprintf(p, sizeof(p), "%s.actions", path);
    if (!acts)
        return fail(c, ROUTING_EINVALID, path, "needs \"actions\"");
    if (!json_is_array(acts) || json_array_size(acts) == 0)
        return fail(c, ROUTING_EINVALID, p, "must be a non-empty array");
    if (json_array_size(acts) > ROUTING_MAX_ACTIONS)
        return fail(c, ROUTING_ETOOBIG, p, "%zu actions, limit is %d", json_array_size(acts), ROUTING_MAX_ACTIONS);
    r->n_actions = json_array_size(acts);
    r->actions = arena_alloc(c->rs, r->n_actions * sizeof(*r->actions));
    memset(r->actions, 0, r->n_actions * sizeof(*r->actions));
    for (size_t i = 0; i < r->n_actions; i++) {
        char ap[140];
        snprintf(ap, sizeof(ap), "%s[%zu]", p, i);
        if ((rc = compile_action(c, json_array_get(acts, i), ap, &r->actions[i])) != 0)
            return rc;
    }
    return 0;
}

int rules_compile(const char *json, size_t len, routing_ruleset_t **out, routing_error_t *err)
{
    static const char *const allowed[] = {"number", "description", "rules", NULL};
    cctx_t c = {.err = err};
    json_error_t jerr;
    json_t *doc = NULL, *rules;
    const char *s;
    size_t n;
    int rc;

    if (err)
        memset(err, 0, sizeof(*err));
    if (!out || (!json && len))
        return ROUTING_EARG;
    *out = NULL;
    c.rs = xcalloc(1, sizeof(*c.rs));
    atomic_init(&c.rs->refs, 1);
    if (len > ROUTING_MAX_DOC) {
        rc = fail(&c, ROUTING_ETOOBIG, "", "document is %zu bytes, limit is %d", len, ROUTING_MAX_DOC);
        goto done;
    }
    doc = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        rc = fail(&c, ROUTING_ESYNTAX, "", "line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        if (err) {
            err->line = jerr.line;
            err->column = jerr.column;
        }
        goto done;
    }
    if (!json_is_object(doc)) {
        rc = fail(&c, ROUTING_EINVALID, "", "the document must be a JSON object");
        goto done;
    }
    if ((rc = check_keys(&c, doc, "", allowed, "key", "")) != 0)
        goto done;
    if ((rc = get_str(&c, doc, "", "number", 1, "the document needs \"number\" (E.164)", &s, &n)) != 0)
        goto done;
    if (!is_e164(s)) {
        rc = fail(&c, ROUTING_EINVALID, "number", "\"%.40s\" is not E.164 (+ and up to 15 digits)", s);
        goto done;
    }
    c.rs->number = arena_strndup(c.rs, s, n);
    rules = json_object_get(doc, "rules");
    if (!rules) {
        rc = fail(&c, ROUTING_EINVALID, "", "the document needs \"rules\" (an array)");
        goto done;
    }
    if (!json_is_array(rules)) {
        rc = fail(&c, ROUTING_EINVALID, "rules", "must be an array");
        goto done;
    }
    if (json_array_size(rules) > ROUTING_MAX_RULES) {
        rc = fail(&c, ROUTING_ETOOBIG, "rules", "%zu rules, limit is %d", json_array_size(rules), ROUTING_MAX_RULES);
        goto done;
    }
    c.rs->n_rules = json_array_size(rules);
    c.rs->rules = arena_alloc(c.rs, (c.rs->n_rules ? c.rs->n_rules : 1) * sizeof(rule_t));
    memset(c.rs->rules, 0, (c.rs->n_rules ? c.rs->n_rules : 1) * sizeof(rule_t));
    for (size_t i = 0; i < c.rs->n_rules; i++)
        if ((rc = compile_rule(&c, json_array_get(rules, i), i, &c.rs->rules[i])) != 0)
            goto done;
    if (c.rs->any_regex) {
        const char **srcs = xcalloc(c.rs->n_rules, sizeof(*srcs)), **flags = xcalloc(c.rs->n_rules, sizeof(*flags));
        for (size_t i = 0; i < c.rs->n_rules; i++) {
            srcs[i] = c.rs->rules[i].src;
            flags[i] = c.rs->rules[i].flags;
        }
        rc = prefilter_build(c.rs, srcs, flags);
        free(srcs);
        free(flags);
        if (rc != 0)
            goto done;
    }
    *out = c.rs;
    c.rs = NULL;
    rc = 0;
done:
    json_decref(doc);
    free(c.forms);
    rules_unref(c.rs);
    return rc;
}

routing_ruleset_t *rules_ref(routing_ruleset_t *rs)
{
    atomic_fetch_add_explicit(&rs->refs, 1, memory_order_relaxed);
    return rs;
}

void rules_unref(routing_ruleset_t *rs)
{
    if (!rs || atomic_fetch_sub_explicit(&rs->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < rs->n_rxs; i++) {
        pcre2_code_free(rs->rxs[i]->code);
        free(rs->rxs[i]);
    }
    free(rs->rxs);
    prefilter_free(rs->pf);
    for (int m = 0; m < 2; m++) {
        for (size_t i = 0; i < rs->kw[m].cap; i++)
            free(rs->kw[m].slots[i].rules);
        free(rs->kw[m].slots);
    }
    while (rs->arena) {
        struct arena_chunk *next = rs->arena->next;
        free(rs->arena);
        rs->arena = next;
    }
    free(rs);
}

const char *rules_number(const routing_ruleset_t *rs)
{
    return rs->number;
}

size_t rules_count(const routing_ruleset_t *rs)
{
    return rs->n_rules;
}

const char *rules_name(const routing_ruleset_t *rs, size_t i)
{
    return i < rs->n_rules ? rs->rules[i].name : NULL;
}

const routing_action_t *rules_actions(const routing_ruleset_t *rs, size_t i, size_t *n)
{
    if (i >= rs->n_rules) {
        *n = 0;
        return NULL;
    }
    *n = rs->rules[i].n_actions;
    return rs->rules[i].actions;
}

int rules_version(const routing_ruleset_t *rs)
{
    return rs->version;
}

void rules_set_version(routing_ruleset_t *rs, int version)
{
    rs->version = version;
}

const char *routing_strerror(int err)
{
    switch (err) {
    case 0: return "success";
    case ROUTING_ESYNTAX: return "not valid JSON";
    case ROUTING_EINVALID: return "not a valid rule set";
    case ROUTING_ETOOBIG: return "over a size limit";
    case ROUTING_EARG: return "bad argument";
    default: return "unknown error";
    }
}
