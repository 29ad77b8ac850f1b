/*
 * Literal prefilter for regex rules, so a message that falls through 40 regex rules costs
 * one pass over its bytes instead of 40 PCRE2 calls. For each pattern a conservative
 * parser finds a set of ASCII literals one of which every match must contain (e.g.
 * {"order", "track"} for \b(order|track)\s*#?\d{4,}); anything it does not fully
 * understand gives no set, and that rule's regex always runs. An Aho-Corasick automaton
 * over all sets, case-folded to ASCII lower case, then marks the candidate rules of a body
 * in one scan. Sound for caseless patterns too: the only non-ASCII characters that match
 * an ASCII letter caselessly, U+017F (s) and U+212A (k), are folded by the scan.
 */
#include "routing/routing_int.h"
#include "common/xalloc.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define LIT_MAX 16  /* strings per set */
#define LIT_LEN 32  /* bytes kept per string (a prefix of a required string is required) */
#define AC_MAX_STATES 65536

typedef struct litset {
    int n; /* -1: no usable set */
    int minlen;
    char s[LIT_MAX][LIT_LEN + 1];
} litset_t;

typedef struct parser {
    const char *p, *end;
    int bail;
    int depth;
} parser_t;

static void set_none(litset_t *s)
{
    s->n = -1;
    s->minlen = 0;
}

static void consider(litset_t *best, const litset_t *cand)
{
    if (cand->n <= 0)
        return;
    if (best->n <= 0 || cand->minlen > best->minlen || (cand->minlen == best->minlen && cand->n < best->n))
        *best = *cand;
}

static void flush_run(litset_t *best, char *run, int *rl)
{
    litset_t c;
    if (*rl == 0)
        return;
    c.n = 1;
    c.minlen = *rl;
    memcpy(c.s[0], run, (size_t)*rl);
    c.s[0][*rl] = '\0';
    consider(best, &c);
    *rl = 0;
}

/* Quantifier after an item: 0 none, 1 optional (? * {0,}), 2 one or more (+ {n,} n >= 1). */
static int quantifier(parser_t *ps)
{
    const char *p = ps->p;
    int q = 0;

    if (p < ps->end && (*p == '?' || *p == '*')) {
        q = 1;
        p++;
    } else if (p < ps->end && *p == '+') {
        q = 2;
        p++;
    } else if (p < ps->end && *p == '{') {
        const char *d = p + 1;
        long lo = 0;
        int digits = 0;
        while (d < ps->end && isdigit((unsigned char)*d) && digits < 6) {
            lo = lo * 10 + (*d++ - '0');
            digits++;
        }
        if (digits == 0)
            return 0; /* a literal '{' */
        if (d < ps->end && *d == ',') {
            d++;
            while (d < ps->end && isdigit((unsigned char)*d))
                d++;
        }
        if (d >= ps->end || *d != '}')
            return 0;
        q = lo == 0 ? 1 : 2;
        p = d + 1;
    }
    if (q && p < ps->end && (*p == '?' || *p == '+'))
        p++; /* lazy or possessive */
    ps->p = p;
    return q;
}

static void parse_alt(parser_t *ps, litset_t *out);

/* One alternative: returns its best required set in *best (n <= 0: none). */
static void parse_seq(parser_t *ps, litset_t *best)
{
    char run[LIT_LEN];
    int rl = 0;

    set_none(best);
    while (ps->p < ps->end && !ps->bail) {
        unsigned char c = (unsigned char)*ps->p;
        int literal = -1;

        if (c == '|' || c == ')')
            break;
        if (c == '(') {
            litset_t g;
            ps->p++;
            if (ps->p < ps->end && *ps->p == '?') {
                const char *o = ps->p + 1;
                while (o < ps->end && strchr("imsn-^", *o))
                    o++;
                if (o < ps->end && *o == ')' ) {
                    ps->p = o + 1; /* option setting, e.g. (?i) */
                    flush_run(best, run, &rl);
                    continue;
                }
                if (o >= ps->end || *o != ':') {
                    ps->bail = 1; /* lookaround, named or atomic group, x flag, ... */
                    break;
                }
                ps->p = o + 1;
            }
            if (++ps->depth > 32) {
                ps->bail = 1;
                break;
            }
            parse_alt(ps, &g);
            ps->depth--;
            if (ps->bail || ps->p >= ps->end || *ps->p != ')') {
                ps->bail = 1;
                break;
            }
            ps->p++;
            flush_run(best, run, &rl);
            if (quantifier(ps) != 1)
                consider(best, &g);
            continue;
        }
        if (c == '[') {
            const char *q = ps->p + 1;
            if (q < ps->end && *q == '^')
                q++;
            if (q < ps->end && *q == ']')
                q++;
            while (q < ps->end && *q != ']') {
                if (*q == '\\')
                    q++;
                else if (*q == '[' && q + 1 < ps->end && q[1] == ':') {
                    const char *e = strstr(q, ":]");
                    if (!e || e >= ps->end) {
                        ps->bail = 1;
                        return;
                    }
                    q = e + 1;
                }
                q++;
            }
            if (q >= ps->end) {
                ps->bail = 1;
                break;
            }
            ps->p = q + 1;
            flush_run(best, run, &rl);
            (void)quantifier(ps);
            continue;
        }
        if (c == '.' || c == '^' || c == '$') {
            ps->p++;
            flush_run(best, run, &rl);
            (void)quantifier(ps);
            continue;
        }
        if (c == '*' || c == '+' || c == '?') {
            ps->bail = 1;
            break;
        }
        if (c == '\\') {
            unsigned char e;
            if (ps->p + 1 >= ps->end) {
                ps->bail = 1;
                break;
            }
            e = (unsigned char)ps->p[1];
            ps->p += 2;
            if (e >= 0x80 || e == 'g' || e == 'k' || e == 'Q' || e == 'N' || e == 'E') {
                ps->bail = 1;
                break;
            }
            if (isalnum(e)) {
                if (e == 'x' || e == 'o' || e == 'p' || e == 'P') {
                    if (ps->p < ps->end && *ps->p == '{') {
                        const char *b = memchr(ps->p, '}', (size_t)(ps->end - ps->p));
                        if (!b) {
                            ps->bail = 1;
                            break;
                        }
                        ps->p = b + 1;
                    } else if (e == 'x') {
                        for (int k = 0; k < 2 && ps->p < ps->end && isxdigit((unsigned char)*ps->p); k++)
                            ps->p++;
                    } else if (ps->p < ps->end) {
                        ps->p++;
                    }
                } else if (e == 'c') {
                    if (ps->p < ps->end)
                        ps->p++;
                } else if (isdigit(e)) {
                    while (ps->p < ps->end && isdigit((unsigned char)*ps->p))
                        ps->p++;
                }
                flush_run(best, run, &rl);
                (void)quantifier(ps);
                continue;
            }
            literal = e;
        } else if (c >= 0x80 || c < 0x20) {
            /* Non-ASCII: not a literal we can match case-insensitively byte-wise. */
            ps->p++;
            while (ps->p < ps->end && ((unsigned char)*ps->p & 0xC0) == 0x80)
                ps->p++;
            flush_run(best, run, &rl);
            (void)quantifier(ps);
            continue;
        } else {
            literal = c;
            ps->p++;
        }
        switch (quantifier(ps)) {
        case 0:
            if (rl < LIT_LEN)
                run[rl++] = (char)tolower(literal);
            break;
        case 1:
            flush_run(best, run, &rl);
            break;
        default:
            if (rl < LIT_LEN)
                run[rl++] = (char)tolower(literal);
            flush_run(best, run, &rl);
            break;
        }
    }
    flush_run(best, run, &rl);
}

static void parse_alt(parser_t *ps, litset_t *out)
{
    litset_t a;
    int first = 1;

    set_none(out);
    for (;;) {
        parse_seq(ps, &a);
        if (ps->bail)
            return;
        if (a.n <= 0) {
            /* One alternative without a required literal: the group gives no set. */
            set_none(out);
            while (ps->p < ps->end && *ps->p == '|') { /* still parse the rest for syntax */
                ps->p++;
                parse_seq(ps, &a);
                if (ps->bail)
                    return;
            }
            return;
        }
        if (first) {
            *out = a;
            first = 0;
        } else if (out->n > 0) {
            if (out->n + a.n > LIT_MAX) {
                set_none(out);
            } else {
                for (int i = 0; i < a.n; i++)
                    memcpy(out->s[out->n + i], a.s[i], sizeof(a.s[i]));
                out->n += a.n;
                if (a.minlen < out->minlen)
                    out->minlen = a.minlen;
            }
        }
        if (ps->p < ps->end && *ps->p == '|') {
            ps->p++;
            continue;
        }
        return;
    }
}

/* Fills *out with the required literal set of a pattern; returns 0, or -1 when there is none. */
static int required_literals(const char *src, size_t n, const char *flags, litset_t *out)
{
    parser_t ps = {src, src + n, 0, 0};

    if (flags && strchr(flags, 'x'))
        return -1;
    parse_alt(&ps, out);
    if (ps.bail || ps.p != ps.end || out->n <= 0)
        return -1;
    return 0;
}

/* ---- the automaton ---- */

typedef struct trie_node {
    int next[128];
    int fail;
    int *rules;
    size_t n, cap;
} trie_node_t;

int prefilter_build(routing_ruleset_t *rs, const char *const *srcs, const char *const *flags)
{
    trie_node_t *t;
    size_t nt = 1, capt = 64;
    int *queue, qh = 0, qt = 0, nclass = 1;
    prefilter_t *pf;

    t = xcalloc(capt, sizeof(*t));
    memset(t[0].next, -1, sizeof(t[0].next));
    for (size_t i = 0; i < rs->n_rules; i++) {
        litset_t ls;
        rule_t *r = &rs->rules[i];
        if (r->kind != WHEN_REGEX || required_literals(srcs[i], strlen(srcs[i]), flags[i], &ls) != 0)
            continue;
        for (int k = 0; k < ls.n; k++) {
            int s = 0;
            for (const char *c = ls.s[k]; *c; c++) {
                int b = (unsigned char)*c & 0x7F;
                if (t[s].next[b] < 0) {
                    if (nt == capt) {
                        capt *= 2;
                        t = xrealloc(t, capt * sizeof(*t));
                    }
                    memset(&t[nt], 0, sizeof(t[nt]));
                    memset(t[nt].next, -1, sizeof(t[nt].next));
                    t[s].next[b] = (int)nt++;
                }
                s = t[s].next[b];
            }
            if (t[s].n == t[s].cap) {
                t[s].cap = t[s].cap ? t[s].cap * 2 : 2;
                t[s].rules = xrealloc(t[s].rules, t[s].cap * sizeof(int));
            }
            t[s].rules[t[s].n++] = (int)i;
        }
        r->prefiltered = 1;
    }
    if (nt > AC_MAX_STATES) {
        for (size_t i = 0; i < rs->n_rules; i++)
            rs->rules[i].prefiltered = 0;
        for (size_t s = 0; s < nt; s++)
            free(t[s].rules);
        free(t);
        return 0;
    }
    pf = xcalloc(1, sizeof(*pf));
    /* Byte classes: each byte used by a literal gets one (upper-case letters share the lower-case one). */
    for (int b = 0; b < 128; b++) {
        int used = 0;
        for (size_t s = 0; s < nt && !used; s++)
            used = t[s].next[b] >= 0;
        if (used)
            pf->cls[b] = (uint8_t)nclass++;
    }
    for (int b = 'A'; b <= 'Z'; b++)
        pf->cls[b] = pf->cls[b + 32];
    pf->nclass = nclass;
    pf->nstates = (int)nt;
    pf->delta = xcalloc(nt * (size_t)nclass, sizeof(int32_t));
    queue = xmalloc(nt * sizeof(int));
    /* Breadth-first: failure links, the full transition table, outputs merged along failure links. */
    t[0].fail = 0;
    for (int b = 0; b < 128; b++) {
        int c = pf->cls[b];
        if (!c || (b >= 'A' && b <= 'Z'))
            continue;
        if (t[0].next[b] >= 0) {
            t[t[0].next[b]].fail = 0;
            pf->delta[c] = t[0].next[b];
            queue[qt++] = t[0].next[b];
        }
    }
    while (qh < qt) {
        int s = queue[qh++], f = t[s].fail;
        for (size_t k = 0; k < t[f].n; k++) {
            if (t[s].n == t[s].cap) {
                t[s].cap = t[s].cap ? t[s].cap * 2 : 2;
                t[s].rules = xrealloc(t[s].rules, t[s].cap * sizeof(int));
            }
            t[s].rules[t[s].n++] = t[f].rules[k];
        }
        for (int b = 0; b < 128; b++) {
            int c = pf->cls[b], n;
            if (!c || (b >= 'A' && b <= 'Z'))
                continue;
            n = t[s].next[b];
            if (n >= 0) {
                t[n].fail = pf->delta[(size_t)f * (size_t)nclass + (size_t)c];
                pf->delta[(size_t)s * (size_t)nclass + (size_t)c] = n;
                queue[qt++] = n;
            } else {
                pf->delta[(size_t)s * (size_t)nclass + (size_t)c] = pf->delta[(size_t)f * (size_t)nclass + (size_t)c];
            }
        }
    }
    pf->out_off = xcalloc(nt + 1, sizeof(int));
    for (size_t s = 0; s < nt; s++)
        pf->out_off[s + 1] = pf->out_off[s] + (int)t[s].n;
    pf->out = xmalloc(((size_t)pf->out_off[nt] + 1) * sizeof(int));
    for (size_t s = 0; s < nt; s++) {
        if (t[s].n)
            memcpy(pf->out + pf->out_off[s], t[s].rules, t[s].n * sizeof(int));
        free(t[s].rules);
    }
    free(t);
    free(queue);
    rs->pf = pf;
    return 0;
}

void prefilter_free(prefilter_t *pf)
{
    if (!pf)
        return;
    free(pf->delta);
    free(pf->out_off);
    free(pf->out);
    free(pf);
}

void prefilter_scan(const prefilter_t *pf, const char *body, size_t len, uint64_t *cand)
{
    const unsigned char *b = (const unsigned char *)body;
    const int32_t *delta = pf->delta;
    size_t nclass = (size_t)pf->nclass;
    int32_t s = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned c = b[i];
        if (c >= 0x80) {
            /* U+017F and U+212A match 's' and 'k' caselessly. */
            if (c == 0xC5 && i + 1 < len && b[i + 1] == 0xBF) {
                c = 's';
                i++;
            } else if (c == 0xE2 && i + 2 < len && b[i + 1] == 0x84 && b[i + 2] == 0xAA) {
                c = 'k';
                i += 2;
            } else {
                c = 0;
            }
        }
        s = delta[(size_t)s * nclass + pf->cls[c]];
        for (int k = pf->out_off[s]; k < pf->out_off[s + 1]; k++)
            cand[pf->out[k] >> 6] |= 1ull << (pf->out[k] & 63);
    }
}
