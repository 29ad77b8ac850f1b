/*
 * routing_evaluate(): the pure decision for one inbound message — carrier keywords,
 * then a form in progress, then the rules in order. All working memory (PCRE2 match
 * data, JIT stack, the cleaned body, rendered texts) lives in the caller's
 * routing_decision_t, allocated once by routing_decision_init(), so evaluation neither
 * allocates nor does I/O, and a hostile regex or body is cut off by PCRE2's limits.
 */
#include "routing/routing_int.h"
#include "common/utf8.h"
#include "common/xalloc.h"

#include <stdlib.h>
#include <string.h>

struct routing_scratch {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
    const char *body; /* the body as matched: the input, or clean[] */
    size_t len;
    uint8_t present[32]; /* bytes occurring in body */
    int have_present;
    int have_cand;
    uint64_t cand[(ROUTING_MAX_RULES + 63) / 64]; /* prefilter candidates */
    char clean[3 * ROUTING_MAX_BODY];
    char text[ROUTING_TEXT_ARENA];
    size_t text_len;
};

void routing_decision_init(routing_decision_t *d)
{
    struct routing_scratch *s = xcalloc(1, sizeof(*s));

    memset(d, 0, sizeof(*d));
    s->md = pcre2_match_data_create(1, NULL);
    s->mctx = pcre2_match_context_create(NULL);
    s->jit = pcre2_jit_stack_create(32 * 1024, ROUTING_JIT_STACK_MAX, NULL);
    if (!s->md || !s->mctx)
        abort();
    pcre2_set_match_limit(s->mctx, ROUTING_MATCH_LIMIT);
    pcre2_set_depth_limit(s->mctx, ROUTING_DEPTH_LIMIT);
    pcre2_set_heap_limit(s->mctx, 4096);
    /* Without a JIT stack of our own, JIT would use 32 KiB on the machine stack. */
    if (s->jit)
        pcre2_jit_stack_assign(s->mctx, NULL, s->jit);
    d->scratch = s;
}

void routing_decision_close(routing_decision_t *d)
{
    struct routing_scratch *s = d->scratch;

    if (!s)
        return;
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    if (s->jit)
        pcre2_jit_stack_free(s->jit);
    free(s);
    d->scratch = NULL;
}

/*
 * Validates the body's UTF-8 once (so every match can pass PCRE2_NO_UTF_CHECK) and
 * caps its length; invalid bytes become U+FFFD in a copy.
 */
static void prepare_body(struct routing_scratch *s, const char *body, size_t len, unsigned *flags)
{
    const unsigned char *b = (const unsigned char *)body;
    size_t i, o = 0;

    if (len > ROUTING_MAX_BODY) {
        len = ROUTING_MAX_BODY;
        while (len > 0 && (b[len] & 0xC0) == 0x80 && ROUTING_MAX_BODY - len < 3)
            len--;
        *flags |= ROUTING_F_BODY_CUT;
    }
    i = utf8_valid_prefix(body, len);
    s->have_present = 0;
    s->have_cand = 0;
    if (i == len) {
        s->body = body;
        s->len = len;
        return;
    }
    *flags |= ROUTING_F_INVALID_UTF8;
    memcpy(s->clean, body, i);
    o = i;
    while (i < len) {
        size_t k = utf8_seq(b + i, len - i);
        if (k == 0) {
            memcpy(s->clean + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(s->clean + o, body + i, k);
            o += k;
            i += k;
        }
    }
    s->body = s->clean;
    s->len = o;
}

/* ---- rendered texts ---- */

typedef struct text_w {
    struct routing_scratch *s;
    size_t start;
    int cut;
} text_w;

static void tw_begin(text_w *w, struct routing_scratch *s)
{
    w->s = s;
    w->start = s->text_len;
    w->cut = 0;
}

static void tw_put(text_w *w, const char *p, size_t n)
{
    struct routing_scratch *s = w->s;
    size_t room = sizeof(s->text) - s->text_len - 1;

    if (n > room) {
        n = room;
        w->cut = 1;
    }
    memcpy(s->text + s->text_len, p, n);
    s->text_len += n;
}

static const char *tw_end(text_w *w, size_t *len, unsigned *flags)
{
    struct routing_scratch *s = w->s;

    s->text[s->text_len] = '\0';
    *len = s->text_len - w->start;
    s->text_len++;
    if (w->cut)
        *flags |= ROUTING_F_TRUNCATED;
    return s->text + w->start;
}

static const char *attr_get(const routing_input_t *in, const char *key)
{
    for (size_t i = 0; i < in->n_attrs; i++)
        if (in->attrs[i].key && strcmp(in->attrs[i].key, key) == 0)
            return in->attrs[i].value;
    if (strcmp(key, "phone") == 0)
        return in->from;
    return NULL;
}

static void tw_tmpl(text_w *w, const routing_tmpl_t *t, const routing_input_t *in)
{
    for (size_t i = 0; t && i < t->n; i++) {
        const tmpl_seg_t *g = &t->segs[i];
        const char *v;
        if (g->lit) {
            tw_put(w, g->lit, g->lit_len);
            continue;
        }
        v = attr_get(in, g->field);
        if (!v || !*v)
            v = g->def ? g->def : "";
        tw_put(w, v, strlen(v));
    }
}

/* ---- decision building ---- */

static routing_out_action_t *push(routing_decision_t *d, routing_action_type_t type, routing_source_t src)
{
    routing_out_action_t *a;

    if (d->n_actions == ROUTING_MAX_OUT_ACTIONS) {
        d->flags |= ROUTING_F_TRUNCATED;
        return NULL;
    }
    a = &d->actions[d->n_actions++];
    memset(a, 0, sizeof(*a));
    a->type = type;
    a->source = src;
    a->rule_index = -1;
    a->action_index = -1;
    return a;
}

static void set_text(routing_decision_t *d, routing_out_action_t *a, const char *txt)
{
    text_w w;
    tw_begin(&w, d->scratch);
    tw_put(&w, txt, strlen(txt));
    a->text = tw_end(&w, &a->text_len, &d->flags);
}

static int has_tag(const routing_input_t *in, const char *tag)
{
    for (size_t i = 0; i < in->n_tags; i++)
        if (in->tags[i] && strcmp(in->tags[i], tag) == 0)
            return 1;
    return 0;
}

static void note_limit(routing_decision_t *d, int rule)
{
    d->flags |= ROUTING_F_LIMIT_HIT;
    if (d->n_limit_rules < ROUTING_MAX_LIMIT_HITS)
        d->limit_rules[d->n_limit_rules++] = rule;
}

/* Runs rx on subj; 1 on a match, 0 otherwise (a limit hit is noted and is no match). */
static int rx_run(const routing_rx_t *rx, const char *subj, size_t len, routing_decision_t *d, int rule)
{
    struct routing_scratch *s = d->scratch;
    int rc = rx->jit ? pcre2_jit_match(rx->code, (PCRE2_SPTR)subj, len, 0, 0, s->md, s->mctx)
                     : pcre2_match(rx->code, (PCRE2_SPTR)subj, len, 0, PCRE2_NO_UTF_CHECK, s->md, s->mctx);

    if (rc >= 0)
        return 1;
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT ||
        rc == PCRE2_ERROR_JIT_STACKLIMIT || rc == PCRE2_ERROR_NOMEMORY)
        note_limit(d, rule);
    return 0;
}

static int byte_in(const uint8_t *set, unsigned b)
{
    return (set[b >> 3] >> (b & 7)) & 1;
}

/* Cheap, sound reasons why rx cannot match the body (see compile_rx). */
static int rx_cannot_match(const routing_rx_t *rx, struct routing_scratch *s)
{
    if (s->len < rx->minlen)
        return 1;
    if (!s->have_present) {
        memset(s->present, 0, sizeof(s->present));
        for (size_t i = 0; i < s->len; i++) {
            unsigned b = (unsigned char)s->body[i];
            s->present[b >> 3] |= (uint8_t)(1u << (b & 7));
        }
        s->have_present = 1;
    }
    if (rx->req >= 0) {
        unsigned r = (unsigned)rx->req;
        if (!byte_in(s->present, r) && !(((r | 0x20) >= 'a' && (r | 0x20) <= 'z') && byte_in(s->present, r ^ 0x20)))
            return 1;
    }
    if (rx->use_bitmap) {
        uint64_t hit = 0, a, b;
        for (int i = 0; i < 32; i += 8) {
            memcpy(&a, rx->first + i, 8);
            memcpy(&b, s->present + i, 8);
            hit |= a & b;
        }
        if (!hit)
            return 1;
    }
    return 0;
}

/* An org's text, or dflt when the org has none (NULL, or empty as a column may hold it). */
static const char *org_text(const char *text, const char *dflt)
{
    return text && *text ? text : dflt;
}

static void carrier(routing_decision_t *d, const routing_input_t *in, int in_form)
{
    const kw_result_t *kw = &d->carrier;
    routing_out_action_t *a;

    d->flags |= ROUTING_F_CARRIER;
    if (kw->cls == KW_OPT_OUT || kw->revocation) {
        if ((a = push(d, ROUTING_ACT_OPT_OUT, ROUTING_SRC_CARRIER)) != NULL) {
            a->keyword = kw->keyword;
            set_text(d, a, org_text(in->opt_out_text, ROUTING_DEFAULT_OPT_OUT_TEXT));
        }
        if (in_form)
            d->form.op = ROUTING_FORM_CLEAR;
    } else if (kw->cls == KW_OPT_IN) {
        if ((a = push(d, ROUTING_ACT_OPT_IN, ROUTING_SRC_CARRIER)) != NULL) {
            a->keyword = kw->keyword;
            set_text(d, a, org_text(in->opt_in_text, ROUTING_DEFAULT_OPT_IN_TEXT));
        }
    } else if ((a = push(d, ROUTING_ACT_HELP, ROUTING_SRC_CARRIER)) != NULL) {
        a->keyword = kw->keyword;
        set_text(d, a, org_text(in->help_text, ROUTING_DEFAULT_HELP_TEXT));
    }
}

/* Finds the fill-form action named form; returns it and its rule/action indices, or NULL. */
static const routing_action_t *find_form(const routing_ruleset_t *rs, const char *form, int *ri, int *ai)
{
    for (size_t i = 0; i < rs->n_rules; i++)
        for (size_t j = 0; j < rs->rules[i].n_actions; j++) {
            const routing_action_t *a = &rs->rules[i].actions[j];
            if (a->type == ROUTING_ACT_FILL_FORM && strcmp(a->u.form.form, form) == 0) {
                *ri = (int)i;
                *ai = (int)j;
                return a;
            }
        }
    return NULL;
}

static int is_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Returns 1 when the form consumed the message. */
static int form_step(routing_decision_t *d, const routing_ruleset_t *rs, const routing_input_t *in)
{
    struct routing_scratch *s = d->scratch;
    const routing_action_t *fa;
    const routing_form_field_t *f;
    routing_out_action_t *a;
    const char *ans = s->body;
    size_t n = s->len;
    int ri, ai, step = in->form_step;
    text_w w;

    fa = rs ? find_form(rs, in->form, &ri, &ai) : NULL;
    if (!fa || step < 0 || (size_t)step >= fa->u.form.n_fields) {
        /* The form went away with a reload (or the state is stale): forget it, route normally. */
        d->form.op = ROUTING_FORM_CLEAR;
        return 0;
    }
    d->flags |= ROUTING_F_FORM;
    f = &fa->u.form.fields[step];
    while (n && is_space((unsigned char)*ans)) {
        ans++;
        n--;
    }
    while (n && is_space((unsigned char)ans[n - 1]))
        n--;
    if (!rx_run(f->rx, ans, n, d, -1)) {
        if ((a = push(d, ROUTING_ACT_FORM_REPROMPT, ROUTING_SRC_FORM)) == NULL)
            return 1;
        a->rule_index = ri;
        a->action_index = ai;
        a->rule_name = rs->rules[ri].name;
        a->spec = fa;
        a->field = f->name;
        tw_begin(&w, s);
        if (f->error_tmpl)
            tw_tmpl(&w, f->error_tmpl, in);
        else
            tw_put(&w, ROUTING_DEFAULT_FORM_ERROR, strlen(ROUTING_DEFAULT_FORM_ERROR));
        tw_put(&w, " ", 1);
        tw_tmpl(&w, f->prompt_tmpl, in);
        a->text = tw_end(&w, &a->text_len, &d->flags);
        return 1;
    }
    if ((a = push(d, ROUTING_ACT_FORM_ANSWER, ROUTING_SRC_FORM)) == NULL)
        return 1;
    a->rule_index = ri;
    a->action_index = ai;
    a->rule_name = rs->rules[ri].name;
    a->spec = fa;
    a->field = f->name;
    tw_begin(&w, s);
    tw_put(&w, ans, n);
    a->value = tw_end(&w, &a->value_len, &d->flags);
    tw_begin(&w, s);
    if ((size_t)step + 1 < fa->u.form.n_fields) {
        tw_tmpl(&w, fa->u.form.fields[step + 1].prompt_tmpl, in);
        d->form = (routing_form_change_t){ROUTING_FORM_SET, fa->u.form.form, step + 1};
    } else {
        tw_tmpl(&w, fa->u.form.done_tmpl, in);
        d->form.op = ROUTING_FORM_CLEAR;
    }
    a->text = tw_end(&w, &a->text_len, &d->flags);
    return 1;
}

static void run_actions(routing_decision_t *d, const routing_ruleset_t *rs, int ri, const routing_input_t *in)
{
    const rule_t *r = &rs->rules[ri];
    struct routing_scratch *s = d->scratch;
    text_w w;

    for (size_t j = 0; j < r->n_actions; j++) {
        const routing_action_t *spec = &r->actions[j];
        routing_out_action_t *a = push(d, spec->type, ROUTING_SRC_RULE);

        if (!a)
            return;
        a->rule_index = ri;
        a->action_index = (int)j;
        a->rule_name = r->name;
        a->spec = spec;
        switch (spec->type) {
        case ROUTING_ACT_AUTO_REPLY:
            tw_begin(&w, s);
            tw_tmpl(&w, spec->u.reply.tmpl, in);
            a->text = tw_end(&w, &a->text_len, &d->flags);
            a->mode = spec->u.reply.mode;
            break;
        case ROUTING_ACT_FILL_FORM:
            /* One form at a time: a second fill-form reached through "continue" does nothing. */
            if (d->form.op == ROUTING_FORM_SET) {
                a->noop = 1;
                break;
            }
            tw_begin(&w, s);
            tw_tmpl(&w, spec->u.form.fields[0].prompt_tmpl, in);
            a->text = tw_end(&w, &a->text_len, &d->flags);
            d->form = (routing_form_change_t){ROUTING_FORM_SET, spec->u.form.form, 0};
            break;
        case ROUTING_ACT_FORWARD_SMS:
            tw_begin(&w, s);
            if (spec->u.forward.prefix_tmpl)
                tw_tmpl(&w, spec->u.forward.prefix_tmpl, in);
            tw_put(&w, s->body, s->len);
            a->text = tw_end(&w, &a->text_len, &d->flags);
            a->mode = ROUTING_REPLY_QUEUED;
            break;
        case ROUTING_ACT_ADD_TAG:
            a->noop = has_tag(in, spec->u.tag.tag);
            break;
        case ROUTING_ACT_REMOVE_TAG:
            a->noop = !has_tag(in, spec->u.tag.tag);
            break;
        case ROUTING_ACT_OPT_OUT:
            set_text(d, a, org_text(in->opt_out_text, ROUTING_DEFAULT_OPT_OUT_TEXT));
            if (in->form && d->form.op != ROUTING_FORM_SET)
                d->form.op = ROUTING_FORM_CLEAR;
            break;
        case ROUTING_ACT_OPT_IN:
            set_text(d, a, org_text(in->opt_in_text, ROUTING_DEFAULT_OPT_IN_TEXT));
            break;
        default:
            break;
        }
    }
}

/* Whether rule ri is listed under the folded key e; *cur walks e->rules in step with ri. */
static int kw_has(const kw_entry_t *e, size_t *cur, int ri)
{
    if (!e)
        return 0;
    while (*cur < e->n && e->rules[*cur] < ri)
        (*cur)++;
    return *cur < e->n && e->rules[*cur] == ri;
}

int routing_evaluate(const routing_ruleset_t *rs, const routing_input_t *in, routing_decision_t *d)
{
    struct routing_scratch *s;
    const kw_entry_t *kw_e[2] = {NULL, NULL};
    size_t kw_cur[2] = {0, 0};
    int folded = 0;

    if (!d || !d->scratch || !in || (!in->body && in->body_len))
        return ROUTING_EARG;
    s = d->scratch;
    d->flags = 0;
    d->n_matched = 0;
    d->n_actions = 0;
    d->n_limit_rules = 0;
    d->form = (routing_form_change_t){ROUTING_FORM_KEEP, NULL, 0};
    s->text_len = 0;
    prepare_body(s, in->body ? in->body : "", in->body_len, &d->flags);

    if (in->carrier)
        d->carrier = *in->carrier;
    else
        keywords_classify(in->body ? in->body : "", in->body_len, &d->carrier);
    if (d->carrier.cls != KW_NONE || d->carrier.revocation) {
        carrier(d, in, in->form != NULL);
        return 0;
    }
    if (in->form && form_step(d, rs, in))
        return 0;
    if (!rs) {
        d->flags |= ROUTING_F_NO_RULES;
        return 0;
    }

    for (size_t i = 0; i < rs->n_rules; i++) {
        const rule_t *r = &rs->rules[i];
        int ri = (int)i, hit = 0;

        switch (r->kind) {
        case WHEN_ANY:
            hit = 1;
            break;
        case WHEN_KEYWORDS:
            if (!folded) {
                char buf[ROUTING_FOLD_MAX];
                folded = 1;
                for (int m = 0; m < 2; m++) {
                    int n;
                    if (rs->kw[m].used == 0)
                        continue;
                    n = fold_text(s->body, s->len, (routing_keyword_match_t)m, buf, sizeof(buf));
                    if (n > 0 && (size_t)n <= rs->kw_maxlen[m])
                        kw_e[m] = kw_lookup(&rs->kw[m], buf, (size_t)n);
                }
            }
            hit = kw_has(kw_e[r->match], &kw_cur[r->match], ri);
            break;
        case WHEN_REGEX:
            if (d->n_limit_rules >= ROUTING_MAX_LIMIT_HITS) {
                d->flags |= ROUTING_F_BUDGET;
                break;
            }
            if (r->prefiltered) {
                if (!s->have_cand) {
                    memset(s->cand, 0, sizeof(s->cand));
                    prefilter_scan(rs->pf, s->body, s->len, s->cand);
                    s->have_cand = 1;
                }
                if (!((s->cand[i >> 6] >> (i & 63)) & 1))
                    break;
            }
            hit = !rx_cannot_match(r->rx, s) && rx_run(r->rx, s->body, s->len, d, ri);
            break;
        }
        if (!hit)
            continue;
        if (d->n_matched == ROUTING_MAX_MATCHED) {
            d->flags |= ROUTING_F_TRUNCATED;
            break;
        }
        d->matched[d->n_matched].index = ri;
        d->matched[d->n_matched].name = r->name;
        d->n_matched++;
        run_actions(d, rs, ri, in);
        if (!r->cont)
            break;
    }
    return 0;
}
