/* Internals shared by the routing module's files (compile, evaluate, fold, json). */
#ifndef HERALD_ROUTING_ROUTING_INT_H
#define HERALD_ROUTING_ROUTING_INT_H
#define PCRE2_CODE_UNIT_WIDTH 8
#include "routing/routing.h"

#include <pcre2.h>
#include <stdatomic.h>
#include <stdint.h>

/* Longest folded keyword, and the fold buffers evaluation uses. */
#define ROUTING_FOLD_MAX 256

typedef struct routing_rx {
    pcre2_code *code;
    uint32_t minlen;    /* characters; a body with fewer bytes cannot match */
    int use_bitmap;     /* first[] holds every byte a match can start with */
    uint8_t first[32];
    int req;            /* -1, or an ASCII byte every match contains (either case) */
    int jit;            /* JIT-compiled: use pcre2_jit_match() */
} routing_rx_t;

/* Aho-Corasick automaton over the required literals of the regex rules (prefilter.c). */
typedef struct prefilter {
    uint8_t cls[256]; /* byte -> class; 0: in no literal */
    int nclass, nstates;
    int32_t *delta;   /* nstates x nclass */
    int *out_off;     /* rules whose literal ends in state s: out[out_off[s] .. out_off[s + 1]) */
    int *out;
} prefilter_t;

typedef struct tmpl_seg {
    const char *lit; /* literal text, or NULL for a field */
    size_t lit_len;
    const char *field; /* merge field name */
    const char *def;   /* default when the field is missing or empty, or NULL */
} tmpl_seg_t;

typedef struct routing_tmpl {
    tmpl_seg_t *segs;
    size_t n;
} routing_tmpl_t;

typedef enum when_kind {
    WHEN_KEYWORDS = 0,
    WHEN_REGEX,
    WHEN_ANY,
} when_kind_t;

typedef struct rule {
    const char *name;
    when_kind_t kind;
    routing_keyword_match_t match;
    routing_rx_t *rx;
    const char *src, *flags; /* regex source and flags (WHEN_REGEX) */
    int prefiltered;         /* the regex runs only when prefilter_scan() marks the rule */
    int cont;
    routing_action_t *actions;
    size_t n_actions;
} rule_t;

/* Folded keyword -> the rules (ascending) that list it, one index per match mode. */
typedef struct kw_entry {
    const char *key;
    size_t len;
    uint32_t hash;
    int *rules;
    size_t n, cap;
} kw_entry_t;

typedef struct kw_index {
    kw_entry_t *slots; /* open addressing; key == NULL is empty */
    size_t cap;        /* power of two, or 0 */
    size_t used;
} kw_index_t;

struct arena_chunk;

struct routing_ruleset {
    atomic_int refs;
    int version;
    const char *number;
    rule_t *rules;
    size_t n_rules;
    kw_index_t kw[2]; /* by routing_keyword_match_t */
    size_t kw_maxlen[2];
    int any_regex;
    prefilter_t *pf;
    struct arena_chunk *arena;
    /* Heap objects freed with the set (regexes, templates' arrays, index arrays). */
    routing_rx_t **rxs;
    size_t n_rxs, cap_rxs;
};

/*
 * Folds UTF-8 text for keyword comparison: compatibility decomposition, case folding,
 * combining marks dropped ("Jóin" -> "join", "INFORMACIÓN" -> "informacion"). mode
 * FIRST_WORD takes the first word; MESSAGE the whole text with white-space runs made one
 * space; both trim punctuation and white space at the ends. in must be valid UTF-8.
 * Returns the folded length, or -1 when it would not fit in cap.
 */
int fold_text(const char *in, size_t len, routing_keyword_match_t mode, char *out, size_t cap);

uint32_t fold_hash(const char *s, size_t len);

/* Looks up a folded key; NULL when absent. */
const kw_entry_t *kw_lookup(const kw_index_t *ix, const char *key, size_t len);

/*
 * Builds rs->pf from the regex rules' sources and flags (by rule index; NULL for other
 * rules) and marks the rules it covers. Returns 0.
 */
int prefilter_build(routing_ruleset_t *rs, const char *const *srcs, const char *const *flags);
void prefilter_free(prefilter_t *pf);

/* Sets bit i of cand for every prefiltered rule i whose required literal occurs in body. */
void prefilter_scan(const prefilter_t *pf, const char *body, size_t len, uint64_t *cand);

#endif
