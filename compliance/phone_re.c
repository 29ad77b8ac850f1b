/*
 * Compiles libphonenumber's metadata patterns into small DFAs over the ten
 * digits, so the fast path can test a national number against every number
 * type in a few table lookups instead of several ICU regex runs.
 *
 * Only language membership matters (libphonenumber asks "does the whole number
 * match" and "does some prefix match"), so greedy/lazy choices are irrelevant
 * and a classic construction is exact: pattern -> syntax tree -> Thompson NFA
 * (counted repeats expanded) -> subset construction. The accepted syntax is the
 * subset the metadata uses; anything else (anchors, look-around, back
 * references, possessive quantifiers, non-digit literals, '.') makes the compile
 * fail, and the caller then leaves that country to libphonenumber. Sizes are
 * capped for the same reason.
 */
#include "compliance/phone_int.h"
#include "common/xalloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PATTERN 20000
#define MAX_AST 20000
#define MAX_NFA 200000
#define MAX_DFA 20000
#define MAX_REPEAT 64
#define MAX_DEPTH 100
#define ALL_DIGITS 0x3ffu

/* ---- syntax tree ---- */

enum { N_SET, N_CAT, N_ALT, N_REPEAT, N_EMPTY };

typedef struct node {
    int kind;
    uint16_t mask;   /* N_SET: the digits it matches */
    int a, b;        /* N_CAT/N_ALT: children; N_REPEAT: a = child */
    int min, max;    /* N_REPEAT; max -1 = unbounded */
} node_t;

typedef struct parser {
    const char *s;
    size_t len, pos;
    node_t *nodes;
    int n, depth, bad;
} parser_t;

static int new_node(parser_t *p, int kind)
{
    if (p->n >= MAX_AST) {
        p->bad = 1;
        return 0;
    }
    memset(&p->nodes[p->n], 0, sizeof(node_t));
    p->nodes[p->n].kind = kind;
    return p->n++;
}

static int peek(const parser_t *p)
{
    return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

static int parse_alt(parser_t *p);

static int parse_number(parser_t *p)
{
    int v = 0, any = 0;
    while (peek(p) >= '0' && peek(p) <= '9') {
        v = v * 10 + (p->s[p->pos++] - '0');
        any = 1;
        if (v > MAX_REPEAT) {
            p->bad = 1;
            return 0;
        }
    }
    if (!any)
        p->bad = 1;
    return v;
}

/* "[...]" with digits, ranges of digits and \d; an optional leading '^'. */
static uint16_t parse_class(parser_t *p)
{
    unsigned mask = 0;
    int negate = 0, c, lo;

    p->pos++; /* '[' */
    if (peek(p) == '^') {
        negate = 1;
        p->pos++;
    }
    for (;;) {
        c = peek(p);
        if (c == ']' && p->pos > 0)
            break;
        if (c == '\\' && p->pos + 1 < p->len && p->s[p->pos + 1] == 'd') {
            mask |= ALL_DIGITS;
            p->pos += 2;
            continue;
        }
        if (c < '0' || c > '9') {
            p->bad = 1;
            return 0;
        }
        lo = c - '0';
        p->pos++;
        if (peek(p) == '-' && p->pos + 1 < p->len && p->s[p->pos + 1] >= '0' && p->s[p->pos + 1] <= '9') {
            int hi = p->s[p->pos + 1] - '0';
            p->pos += 2;
            if (hi < lo) {
                p->bad = 1;
                return 0;
            }
            for (int d = lo; d <= hi; d++)
                mask |= 1u << d;
        } else {
            mask |= 1u << lo;
        }
    }
    p->pos++; /* ']' */
    if (negate)
        mask = ~mask & ALL_DIGITS;
    return (uint16_t)mask;
}

static int parse_atom(parser_t *p)
{
    int c = peek(p), id;

    if (c >= '0' && c <= '9') {
        id = new_node(p, N_SET);
        p->nodes[id].mask = (uint16_t)(1u << (c - '0'));
        p->pos++;
        return id;
    }
    if (c == '\\' && p->pos + 1 < p->len && p->s[p->pos + 1] == 'd') {
        id = new_node(p, N_SET);
        p->nodes[id].mask = ALL_DIGITS;
        p->pos += 2;
        return id;
    }
    if (c == '[') {
        id = new_node(p, N_SET);
        p->nodes[id].mask = parse_class(p);
        return id;
    }
    if (c == '(') {
        p->pos++;
        if (peek(p) == '?') {
            if (p->pos + 1 < p->len && p->s[p->pos + 1] == ':') {
                p->pos += 2;
            } else {
                p->bad = 1; /* look-around, named groups, flags */
                return 0;
            }
        }
        if (++p->depth > MAX_DEPTH) {
            p->bad = 1;
            return 0;
        }
        id = parse_alt(p);
        p->depth--;
        if (peek(p) != ')') {
            p->bad = 1;
            return 0;
        }
        p->pos++;
        return id;
    }
    p->bad = 1;
    return 0;
}

static int parse_repeat(parser_t *p)
{
    int atom = parse_atom(p), c, min, max, id, quantified = 0;

    while (!p->bad) {
        c = peek(p);
        if (c == '?' && quantified) {
            p->pos++; /* lazy: same language */
            if (peek(p) == '?' || peek(p) == '+' || peek(p) == '*' || peek(p) == '{')
                p->bad = 1;
            break;
        }
        if (quantified && (c == '+' || c == '*' || c == '{')) {
            p->bad = 1; /* possessive or stacked quantifiers */
            break;
        }
        if (c == '?') {
            min = 0, max = 1;
            p->pos++;
        } else if (c == '*') {
            min = 0, max = -1;
            p->pos++;
        } else if (c == '+') {
            min = 1, max = -1;
            p->pos++;
        } else if (c == '{') {
            p->pos++;
            min = parse_number(p);
            max = min;
            if (peek(p) == ',') {
                p->pos++;
                max = peek(p) == '}' ? -1 : parse_number(p);
            }
            if (peek(p) != '}' || (max >= 0 && max < min)) {
                p->bad = 1;
                break;
            }
            p->pos++;
        } else {
            break;
        }
        id = new_node(p, N_REPEAT);
        p->nodes[id].a = atom;
        p->nodes[id].min = min;
        p->nodes[id].max = max;
        atom = id;
        quantified = 1;
    }
    return atom;
}

static int parse_cat(parser_t *p)
{
    int left = -1, right, id, c;

    for (;;) {
        c = peek(p);
        if (c == -1 || c == '|' || c == ')' || p->bad)
            break;
        right = parse_repeat(p);
        if (left < 0) {
            left = right;
        } else {
            id = new_node(p, N_CAT);
            p->nodes[id].a = left;
            p->nodes[id].b = right;
            left = id;
        }
    }
    return left < 0 ? new_node(p, N_EMPTY) : left;
}

static int parse_alt(parser_t *p)
{
    int left = parse_cat(p), id;

    while (!p->bad && peek(p) == '|') {
        p->pos++;
        id = new_node(p, N_ALT);
        p->nodes[id].a = left;
        p->nodes[id].b = parse_cat(p);
        left = id;
    }
    return left;
}

/* ---- Thompson NFA, built backwards from the accepting state ---- */

enum { S_CHAR, S_SPLIT, S_MATCH };

typedef struct nstate {
    int kind;
    uint16_t mask;
    int out, out1;
} nstate_t;

typedef struct nfa {
    nstate_t *s;
    int n, cap, bad;
    const node_t *nodes;
} nfa_t;

static int nfa_add(nfa_t *f, int kind, uint16_t mask, int out, int out1)
{
    if (f->n >= MAX_NFA) {
        f->bad = 1;
        return 0;
    }
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 256;
        f->s = xrealloc(f->s, (size_t)f->cap * sizeof(nstate_t));
    }
    f->s[f->n] = (nstate_t){kind, mask, out, out1};
    return f->n++;
}

/* Returns a state that matches node `id` and then continues at `next`. */
static int build(nfa_t *f, int id, int next)
{
    const node_t *nd = &f->nodes[id];
    int s, loop;

    if (f->bad)
        return next;
    switch (nd->kind) {
    case N_SET:
        return nfa_add(f, S_CHAR, nd->mask, next, -1);
    case N_CAT:
        return build(f, nd->a, build(f, nd->b, next));
    case N_ALT:
        s = build(f, nd->a, next);
        return nfa_add(f, S_SPLIT, 0, s, build(f, nd->b, next));
    case N_REPEAT:
        if (nd->max < 0) {
            loop = nfa_add(f, S_SPLIT, 0, -1, next);
            f->s[loop].out = build(f, nd->a, loop);
            s = loop;
        } else {
            s = next;
            for (int i = 0; i < nd->max - nd->min && !f->bad; i++)
                s = nfa_add(f, S_SPLIT, 0, build(f, nd->a, s), next);
        }
        for (int i = 0; i < nd->min && !f->bad; i++)
            s = build(f, nd->a, s);
        return s;
    case N_EMPTY:
    default:
        return next;
    }
}

/* ---- subset construction ---- */

struct phone_dfa {
    int nstates;
    int start;
    int32_t (*next)[10]; /* -1: dead */
    uint8_t *accept;
};

typedef struct dset {
    int *items;
    int n;
} dset_t;

typedef struct builder {
    const nfa_t *nfa;
    dset_t *sets;
    int nsets, capsets;
    int *hash; /* open addressing over set indices, -1 empty */
    size_t hcap;
    int *mark;  /* per NFA state: generation stamp */
    int gen;
    int *stack, *tmp;
} builder_t;

static uint64_t set_hash(const int *v, int n)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) {
        h ^= (uint64_t)(uint32_t)v[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Epsilon closure of the seeds in b->tmp[0..n): CHAR and MATCH states, sorted. */
static int closure(builder_t *b, int n)
{
    int sp = 0, out = 0;

    b->gen++;
    for (int i = 0; i < n; i++)
        b->stack[sp++] = b->tmp[i];
    while (sp > 0) {
        int s = b->stack[--sp];
        if (s < 0 || b->mark[s] == b->gen)
            continue;
        b->mark[s] = b->gen;
        if (b->nfa->s[s].kind == S_SPLIT) {
            b->stack[sp++] = b->nfa->s[s].out;
            b->stack[sp++] = b->nfa->s[s].out1;
        } else {
            b->tmp[out++] = s;
        }
    }
    qsort(b->tmp, (size_t)out, sizeof(int), cmp_int);
    return out;
}

/* Finds or adds the set b->tmp[0..n); returns its index or -1 when over the cap. */
static int intern(builder_t *b, int n)
{
    uint64_t h = set_hash(b->tmp, n);
    size_t i = (size_t)h & (b->hcap - 1);

    while (b->hash[i] >= 0) {
        const dset_t *d = &b->sets[b->hash[i]];
        if (d->n == n && memcmp(d->items, b->tmp, (size_t)n * sizeof(int)) == 0)
            return b->hash[i];
        i = (i + 1) & (b->hcap - 1);
    }
    if (b->nsets >= MAX_DFA)
        return -1;
    if (b->nsets == b->capsets) {
        b->capsets = b->capsets ? b->capsets * 2 : 64;
        b->sets = xrealloc(b->sets, (size_t)b->capsets * sizeof(dset_t));
    }
    b->sets[b->nsets].items = xmalloc((size_t)(n ? n : 1) * sizeof(int));
    memcpy(b->sets[b->nsets].items, b->tmp, (size_t)n * sizeof(int));
    b->sets[b->nsets].n = n;
    b->hash[i] = b->nsets;
    return b->nsets++;
}

static phone_dfa_t *determinize(const nfa_t *f, int start)
{
    builder_t b;
    phone_dfa_t *dfa = NULL;
    int ok = 1, cap = 64;
    int32_t (*next)[10] = xmalloc((size_t)cap * sizeof(*next));

    memset(&b, 0, sizeof(b));
    b.nfa = f;
    b.hcap = 1u << 16; /* > 2 * MAX_DFA */
    b.hash = xmalloc(b.hcap * sizeof(int));
    memset(b.hash, 0xff, b.hcap * sizeof(int));
    b.mark = xcalloc((size_t)f->n, sizeof(int));
    b.stack = xmalloc((size_t)(3 * f->n + 2) * sizeof(int));
    b.tmp = xmalloc((size_t)(f->n + 1) * sizeof(int));

    b.tmp[0] = start;
    intern(&b, closure(&b, 1));
    for (int cur = 0; cur < b.nsets && ok; cur++) {
        if (cur >= cap) {
            cap *= 2;
            next = xrealloc(next, (size_t)cap * sizeof(*next));
        }
        for (int d = 0; d < 10 && ok; d++) {
            int n = 0;
            const dset_t *set = &b.sets[cur];
            for (int i = 0; i < set->n; i++) {
                const nstate_t *s = &f->s[set->items[i]];
                if (s->kind == S_CHAR && (s->mask & (1u << d)))
                    b.tmp[n++] = s->out;
            }
            if (n == 0) {
                next[cur][d] = -1;
                continue;
            }
            n = closure(&b, n);
            next[cur][d] = intern(&b, n);
            if (next[cur][d] < 0)
                ok = 0;
        }
    }
    if (ok) {
        dfa = xmalloc(sizeof(*dfa));
        dfa->nstates = b.nsets;
        dfa->start = 0;
        dfa->next = xrealloc(next, (size_t)(b.nsets ? b.nsets : 1) * sizeof(*next));
        next = NULL;
        dfa->accept = xcalloc((size_t)b.nsets, 1);
        for (int i = 0; i < b.nsets; i++)
            for (int j = 0; j < b.sets[i].n; j++)
                if (f->s[b.sets[i].items[j]].kind == S_MATCH)
                    dfa->accept[i] = 1;
    }
    for (int i = 0; i < b.nsets; i++)
        free(b.sets[i].items);
    free(b.sets);
    free(b.hash);
    free(b.mark);
    free(b.stack);
    free(b.tmp);
    free(next);
    return dfa;
}

phone_dfa_t *phone_dfa_compile(const char *pattern, size_t len)
{
    parser_t p;
    nfa_t f;
    int root, match, start;
    phone_dfa_t *dfa = NULL;

    if (!pattern || len > MAX_PATTERN)
        return NULL;
    memset(&p, 0, sizeof(p));
    p.s = pattern;
    p.len = len;
    p.nodes = xmalloc(MAX_AST * sizeof(node_t));
    root = parse_alt(&p);
    if (p.bad || p.pos != p.len) {
        free(p.nodes);
        return NULL;
    }
    memset(&f, 0, sizeof(f));
    f.nodes = p.nodes;
    match = nfa_add(&f, S_MATCH, 0, -1, -1);
    start = build(&f, root, match);
    if (!f.bad)
        dfa = determinize(&f, start);
    free(f.s);
    free(p.nodes);
    return dfa;
}

void phone_dfa_free(phone_dfa_t *dfa)
{
    if (!dfa)
        return;
    free(dfa->next);
    free(dfa->accept);
    free(dfa);
}

int phone_dfa_full(const phone_dfa_t *dfa, const char *digits, size_t n)
{
    int s = dfa->start;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)digits[i] - '0';
        if (d > 9)
            return 0;
        s = dfa->next[s][d];
        if (s < 0)
            return 0;
    }
    return dfa->accept[s];
}

int phone_dfa_prefix(const phone_dfa_t *dfa, const char *digits, size_t n)
{
    int s = dfa->start;
    if (dfa->accept[s])
        return 1;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)digits[i] - '0';
        if (d > 9)
            return 0;
        s = dfa->next[s][d];
        if (s < 0)
            return 0;
        if (dfa->accept[s])
            return 1;
    }
    return 0;
}
