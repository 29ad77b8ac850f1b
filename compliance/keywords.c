/*
 * Inbound-SMS keyword classification: the carrier keywords (exact, whole message)
 * and free-text consent revocations (FCC 2024 order: "any reasonable means").
 *
 * The body is decoded as UTF-8 leniently (a bad byte becomes U+FFFD), trimmed of
 * white space and invisible format characters, and split into lower-case ASCII
 * words; apostrophes inside a word are dropped ("don't" -> "dont"), non-ASCII
 * letters make a word that matches nothing, and punctuation ends a clause.
 * Revocations are then found by three kinds of rule, tried in order:
 *   1. an opt-out keyword leads the message ("STOP please", "Stop.");
 *   2. a clause holds only opt-out keywords and courtesy words ("please stop");
 *   3. a phrase from the table below ("take me off your list"), unless a negation
 *      shortly before it in the same clause turns it round ("don't stop texting").
 * False negatives cost a TCPA violation and false positives cost a subscriber, so
 * the phrases lean towards flagging, but ordinary sentences that merely contain
 * "stop" or "end" ("I can't stop smiling", "when does the sale end?") are left alone.
 *
 * Most messages contain no word that can open a phrase or is an opt-out keyword, so
 * each word is looked up once in a small hash table of those trigger words (built
 * from the tables below on first use) and the rules only run where a trigger word
 * stands: at most a few pattern matches per message instead of every pattern at
 * every word. The result is the same as trying everything, because a pattern's
 * first slot is a literal list the word at the start of a match must be in.
 */
#include "compliance/keywords.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unicode/uchar.h>

#define MAX_WORDS 64
#define MAX_WORD_LEN 24

#define W_OPTOUT 0x1u /* in set_optout */
#define W_STRONG 0x2u /* in set_strong */
#define W_FILLER 0x4u /* in set_filler */

typedef struct word {
    char s[MAX_WORD_LEN]; /* lower-case ASCII; "#" marks a word with non-ASCII letters or one too long */
    size_t len;           /* strlen(s) */
    int clause_start;     /* first word after punctuation (or of the message) */
    uint32_t opens;       /* bit p: the word is in the first slot of phrases[p] */
    unsigned flags;       /* W_* */
} word_t;

typedef struct words {
    word_t w[MAX_WORDS];
    int n;
} words_t;

static const struct carrier_kw {
    const char *word;
    kw_class_t cls;
} carrier_keywords[] = {
    {"STOP", KW_OPT_OUT}, {"STOPALL", KW_OPT_OUT}, {"UNSUBSCRIBE", KW_OPT_OUT}, {"CANCEL", KW_OPT_OUT},
    {"END", KW_OPT_OUT},  {"QUIT", KW_OPT_OUT},    {"REVOKE", KW_OPT_OUT},      {"OPTOUT", KW_OPT_OUT},
    {"START", KW_OPT_IN}, {"YES", KW_OPT_IN},      {"UNSTOP", KW_OPT_IN},       {"HELP", KW_HELP},
    {"INFO", KW_HELP},
};

/*
 * Word sets used by the phrase patterns. A pattern slot is either a literal
 * alternative list "a|b|c", a set reference "@NAME", an optional slot "?a|b",
 * a gap "~N" (up to N words from the gap set), or "$" (end of clause).
 */
static const char set_msg[] = "text|texts|texting|txt|txts|txting|texted|message|messages|messaging|msg|msgs|"
                              "sms|sending|contacting|calling|spamming|spam|bugging|harassing|emailing|"
                              "notifications|alerts|promotions|promos|ads|marketing";
static const char set_verb[] =
    "text|txt|message|msg|contact|call|sms|email|spam|bother|send|texting|messaging";
static const char set_gap[] = "sending|all|the|these|those|your|ur|with|me|us|them|you|ya|u|my|this|that|"
                              "number|of|a|any|more|such|stupid|dumb|damn|annoying|fucking|freaking";
static const char set_negation[] = "dont|dnt|never|wont|didnt|doesnt|not|wouldnt|shouldnt|isnt|arent|wasnt";
static const char set_optout[] = "stop|stopall|unsubscribe|cancel|end|quit|revoke|optout";
static const char set_strong[] = "stop|stopall|unsubscribe|revoke|optout";
static const char set_filler[] = "please|pls|plz|pleas|plez|now|ok|okay|k|thanks|thank|you|u|thx|ty|it|all|"
                                 "just|right|asap|immediately|already|again|sir|maam|i|said|told|to|this|"
                                 "that|so|yes|seriously|them|these|texts|messages";

static const struct phrase {
    const char *pattern;
    const char *rule;
    int negatable; /* a negation shortly before the phrase cancels it */
} phrases[] = {
    {"stop|quit|cease|end ~2 @msg", "phrase:stop texting", 1},
    {"remove|delete|drop|erase me|us", "phrase:remove me", 1},
    {"remove|delete|drop|erase my|our|this ?phone|cell|mobile number|contact|info|information|name",
     "phrase:remove my number", 1},
    {"remove|delete ~2 from ~2 list|lists|database", "phrase:remove from list", 1},
    {"take|get|put me|us|my|our|this ~1 off", "phrase:take me off", 1},
    {"off ?of your|the|this|ur|their|yall|ya ?mailing|texting|text|sms|contact|marketing|call|distribution "
     "list|lists",
     "phrase:off your list", 1},
    {"opt me|us ?the out", "phrase:opt me out", 1},
    {"opt out", "phrase:opt out", 1},
    {"optout|optedout", "phrase:opt out", 1},
    {"unsubscribe|unsub|unsubscribing|unsubscribed", "phrase:unsubscribe", 1},
    {"leave me|us alone", "phrase:leave me alone", 1},
    {"no more ~2 @msg", "phrase:no more messages", 0},
    {"dont|dnt|never|nvr ?ever|again|you|u @verb me|us|again|anymore|this|ever|$", "phrase:don't text me", 0},
    {"do not ?ever @verb me|us|again|anymore|this|ever|$", "phrase:don't text me", 0},
    {"revoke|revoking|withdraw|withdrawing|rescind ~2 consent|permission|subscription|authorization",
     "phrase:revoke consent", 0},
    {"cancel|end|terminate ~2 subscription|subscriptions|texts|messages|alerts|notifications|sms",
     "phrase:cancel subscription", 1},
    {"stop ~1 contacting|messaging|texting", "phrase:stop texting", 1},
};

/* Decodes one code point at s[*i], advancing *i; malformed input yields U+FFFD and one byte. */
static UChar32 next_cp(const unsigned char *s, size_t len, size_t *i)
{
    unsigned char c = s[*i];
    UChar32 cp;
    size_t need, k;

    if (c < 0x80) {
        (*i)++;
        return c;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        cp = c & 0x07;
    } else {
        (*i)++;
        return 0xFFFD;
    }
    if (len - *i <= need) {
        (*i)++;
        return 0xFFFD;
    }
    for (k = 1; k <= need; k++) {
        unsigned char cc = s[*i + k];
        if ((cc & 0xC0) != 0x80) {
            (*i)++;
            return 0xFFFD;
        }
        cp = (cp << 6) | (cc & 0x3F);
    }
    /* Overlong forms, surrogates and values past U+10FFFF are malformed too. */
    if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
        (*i)++;
        return 0xFFFD;
    }
    *i += need + 1;
    return cp;
}

/* White space, plus the invisible characters phones and copy-paste leave around a keyword. */
static int is_blank(UChar32 cp)
{
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D))
        return 1;
    if (cp < 0x80)
        return 0;
    if (cp == 0x200B || cp == 0x200C || cp == 0x200D || cp == 0x2060 || cp == 0xFEFF || cp == 0x180E)
        return 1;
    return u_isUWhiteSpace(cp) ? 1 : 0;
}

static int ascii_blank(unsigned char c)
{
    return c == ' ' || (c >= 0x09 && c <= 0x0D);
}

/* Trims blanks at both ends of s[*start..*end). */
static void trim(const unsigned char *s, size_t *start, size_t *end)
{
    size_t i = *start, last_end = *start, first = *end;
    size_t a = *start, b = *end;
    int seen = 0;

    /*
     * Usually both ends are ASCII, which needs no decoding: an ASCII byte always
     * decodes as itself, never as part of a longer sequence.
     */
    while (a < b && ascii_blank(s[a]))
        a++;
    while (b > a && ascii_blank(s[b - 1]))
        b--;
    if (a == b) {
        *start = *end;
        return;
    }
    if (s[a] < 0x80 && s[b - 1] < 0x80) {
        *start = a;
        *end = b;
        return;
    }

    while (i < *end) {
        size_t at = i;
        UChar32 cp = next_cp(s, *end, &i);
        if (!is_blank(cp)) {
            if (!seen)
                first = at;
            seen = 1;
            last_end = i;
        }
    }
    if (!seen) {
        *start = *end;
        return;
    }
    *start = first;
    *end = last_end;
}

static int is_apostrophe(UChar32 cp)
{
    return cp == '\'' || cp == '`' || cp == 0x2019 || cp == 0x2018 || cp == 0x02BC;
}

static inline void push_char(words_t *ws, int *in_word, int *clause, char ch)
{
    word_t *w;
    size_t n;

    if (!*in_word) {
        if (ws->n == MAX_WORDS)
            return;
        w = &ws->w[ws->n++];
        w->s[0] = '\0';
        w->len = 0;
        w->clause_start = *clause;
        *clause = 0;
        *in_word = 1;
    }
    w = &ws->w[ws->n - 1];
    n = w->len;
    if (ch == '#' || n + 1 >= sizeof(w->s)) {
        strcpy(w->s, "#");
        w->len = 1;
        return;
    }
    if (w->s[0] == '#')
        return;
    w->s[n] = ch;
    w->s[n + 1] = '\0';
    w->len = n + 1;
}

static void split_words(const unsigned char *s, size_t len, words_t *ws)
{
    size_t i = 0;
    int in_word = 0, clause = 1;

    ws->n = 0;
    while (i < len) {
        UChar32 cp;
        if (s[i] < 0x80)
            cp = s[i++];
        else
            cp = next_cp(s, len, &i);
        if (cp < 0x80 && ((cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9'))) {
            push_char(ws, &in_word, &clause, (char)cp);
        } else if (cp >= 'A' && cp <= 'Z') {
            push_char(ws, &in_word, &clause, (char)(cp - 'A' + 'a'));
        } else if (in_word && is_apostrophe(cp)) {
            continue;
        } else if (cp >= 0x80 && cp != 0xFFFD && u_isalnum(cp)) {
            push_char(ws, &in_word, &clause, '#');
        } else {
            in_word = 0;
            if (!is_blank(cp) && cp != '-' && cp != '"' && cp != 0x201C && cp != 0x201D)
                clause = 1;
        }
        if (ws->n == MAX_WORDS && !in_word)
            break;
    }
}

/* Whether word is one of the '|'-separated alternatives in alts[0..altlen). */
static int in_alts(const char *word, const char *alts, size_t altlen)
{
    size_t wl = strlen(word), i = 0;

    while (i <= altlen) {
        size_t j = i;
        while (j < altlen && alts[j] != '|')
            j++;
        if (j - i == wl && memcmp(alts + i, word, wl) == 0)
            return 1;
        i = j + 1;
    }
    return 0;
}

static int in_set(const char *word, const char *set)
{
    return in_alts(word, set, strlen(set));
}

/* Resolves a slot's alternatives: "@msg" names a set, anything else is literal. */
static void slot_alts(const char *slot, size_t len, const char **alts, size_t *altlen)
{
    if (len == 4 && memcmp(slot, "@msg", 4) == 0) {
        *alts = set_msg;
        *altlen = strlen(set_msg);
    } else if (len == 5 && memcmp(slot, "@verb", 5) == 0) {
        *alts = set_verb;
        *altlen = strlen(set_verb);
    } else {
        *alts = slot;
        *altlen = len;
    }
}

/* Whether word wi may be consumed: it exists and, unless it opens the match, stays in the clause. */
static int usable(const words_t *ws, int wi, int first)
{
    return wi < ws->n && (first || !ws->w[wi].clause_start);
}

/*
 * Matches the slots of pat against words from index wi on, without crossing a clause
 * boundary. Gaps backtrack, so "~2 @msg" finds "stop sending me texts".
 */
static int match_from(const words_t *ws, int wi, const char *pat, int first)
{
    const char *sp, *alts;
    size_t len, altlen;

    while (*pat == ' ')
        pat++;
    if (*pat == '\0')
        return 1;
    sp = strchr(pat, ' ');
    len = sp ? (size_t)(sp - pat) : strlen(pat);

    if (pat[0] == '$')
        return !first && (wi >= ws->n || ws->w[wi].clause_start) && match_from(ws, wi, pat + len, 0);
    if (pat[0] == '~') {
        int max = pat[1] - '0';
        for (int k = 0; k <= max; k++) {
            if (k > 0 && !(usable(ws, wi + k - 1, first && k == 1) && in_set(ws->w[wi + k - 1].s, set_gap)))
                break;
            if (match_from(ws, wi + k, pat + len, first && k == 0))
                return 1;
        }
        return 0;
    }
    if (pat[0] == '?') {
        slot_alts(pat + 1, len - 1, &alts, &altlen);
        if (usable(ws, wi, first) && in_alts(ws->w[wi].s, alts, altlen) &&
            match_from(ws, wi + 1, pat + len, 0))
            return 1;
        return match_from(ws, wi, pat + len, first);
    }
    slot_alts(pat, len, &alts, &altlen);
    if (!usable(ws, wi, first) || !in_alts(ws->w[wi].s, alts, altlen))
        return 0;
    return match_from(ws, wi + 1, pat + len, 0);
}

/*
 * A negation within the three words before wi in the same clause turns a phrase round
 * ("don't stop texting me"), unless the sentence addresses the sender in between
 * ("why won't you stop texting me" still revokes).
 */
static int negated(const words_t *ws, int wi)
{
    for (int k = wi - 1; k >= 0 && k >= wi - 3; k--) {
        if (in_set(ws->w[k].s, "you|u|ya|yall"))
            return 0;
        if (in_set(ws->w[k].s, set_negation))
            return 1;
        if (ws->w[k].clause_start)
            break;
    }
    return 0;
}

static void upper_copy(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    for (; src[n] && n + 1 < cap; n++)
        dst[n] = (char)(src[n] >= 'a' && src[n] <= 'z' ? src[n] - 32 : src[n]);
    dst[n] = '\0';
}

/* Whether some clause consists only of opt-out keywords and courtesy words, with at least one keyword. */
static const char *filler_clause(const words_t *ws, char *kw, size_t kwlen)
{
    int i = 0;

    while (i < ws->n) {
        int j = i, keywords = 0, other = 0;
        const char *first_kw = NULL;
        do {
            if (ws->w[j].flags & W_OPTOUT) {
                keywords++;
                if (!first_kw)
                    first_kw = ws->w[j].s;
            } else if (!(ws->w[j].flags & W_FILLER)) {
                other++;
            }
            j++;
        } while (j < ws->n && !ws->w[j].clause_start);
        if (keywords > 0 && other == 0) {
            upper_copy(kw, kwlen, first_kw);
            return "keyword+courtesy";
        }
        i = j;
    }
    return NULL;
}

/* ---- trigger words: the fast reject ---- */

#define NPHRASES (sizeof(phrases) / sizeof(phrases[0]))
_Static_assert(sizeof(phrases) / sizeof(phrases[0]) <= 32, "phrase bits must fit a uint32_t");
#define VOCAB_SLOTS 512 /* power of two, well above twice the trigger words */
#define VOCAB_MAX 256

typedef struct vocab_word {
    char s[MAX_WORD_LEN];
    size_t len;
    uint32_t opens;
    unsigned flags;
} vocab_word_t;

static struct vocab {
    vocab_word_t words[VOCAB_MAX];
    size_t n;
    int16_t slot[VOCAB_SLOTS]; /* index into words, -1 when empty */
    uint32_t always;           /* phrases whose first slot is not a literal list: tried everywhere */
} vocab;
static pthread_once_t vocab_once = PTHREAD_ONCE_INIT;

static uint32_t hash_word(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static vocab_word_t *vocab_find(const char *s, size_t len)
{
    uint32_t i = hash_word(s, len) & (VOCAB_SLOTS - 1);

    for (; vocab.slot[i] >= 0; i = (i + 1) & (VOCAB_SLOTS - 1)) {
        vocab_word_t *v = &vocab.words[vocab.slot[i]];
        if (v->len == len && memcmp(v->s, s, len) == 0)
            return v;
    }
    return NULL;
}

static vocab_word_t *vocab_add(const char *s, size_t len)
{
    vocab_word_t *v = vocab_find(s, len);
    uint32_t i;

    if (v != NULL)
        return v;
    /* The tables are fixed; a word that cannot be stored is a programming error. */
    if (vocab.n == VOCAB_MAX || len == 0 || len >= MAX_WORD_LEN)
        abort();
    v = &vocab.words[vocab.n];
    memcpy(v->s, s, len);
    v->s[len] = '\0';
    v->len = len;
    i = hash_word(s, len) & (VOCAB_SLOTS - 1);
    while (vocab.slot[i] >= 0)
        i = (i + 1) & (VOCAB_SLOTS - 1);
    vocab.slot[i] = (int16_t)vocab.n++;
    return v;
}

/* Adds each alternative of alts[0..len) ("a|b|c") with the given phrase bits and flags. */
static void each_alt(const char *alts, size_t len, uint32_t opens, unsigned flags)
{
    size_t i = 0;

    while (i < len) {
        size_t j = i;
        while (j < len && alts[j] != '|')
            j++;
        if (j > i) {
            vocab_word_t *v = vocab_add(alts + i, j - i);
            v->opens |= opens;
            v->flags |= flags;
        }
        i = j + 1;
    }
}

static void vocab_build(void)
{
    for (size_t i = 0; i < VOCAB_SLOTS; i++)
        vocab.slot[i] = -1;
    each_alt(set_optout, strlen(set_optout), 0, W_OPTOUT);
    each_alt(set_strong, strlen(set_strong), 0, W_STRONG);
    each_alt(set_filler, strlen(set_filler), 0, W_FILLER);
    for (size_t p = 0; p < NPHRASES; p++) {
        const char *pat = phrases[p].pattern, *alts;
        size_t len = strcspn(pat, " "), altlen;
        if (pat[0] == '~' || pat[0] == '?' || pat[0] == '$') {
            vocab.always |= UINT32_C(1) << p;
            continue;
        }
        slot_alts(pat, len, &alts, &altlen);
        each_alt(alts, altlen, UINT32_C(1) << p, 0);
    }
}

/* Looks every word up once; returns the union of the phrases some word can open. */
static uint32_t mark_words(words_t *ws, unsigned *flags)
{
    uint32_t opens = vocab.always;

    *flags = 0;
    for (int i = 0; i < ws->n; i++) {
        word_t *w = &ws->w[i];
        const vocab_word_t *v = w->s[0] == '#' ? NULL : vocab_find(w->s, w->len);
        w->opens = v ? v->opens : 0;
        w->flags = v ? v->flags : 0;
        opens |= w->opens;
        *flags |= w->flags;
    }
    return opens;
}

static void classify_exact(const unsigned char *s, size_t len, kw_result_t *out)
{
    char up[sizeof(out->keyword)];

    if (len == 0 || len >= sizeof(up))
        return;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (c >= 'a' && c <= 'z')
            c = (unsigned char)(c - 32);
        else if (c < 'A' || c > 'Z')
            return;
        up[i] = (char)c;
    }
    up[len] = '\0';
    for (size_t k = 0; k < sizeof(carrier_keywords) / sizeof(carrier_keywords[0]); k++) {
        if (strcmp(up, carrier_keywords[k].word) == 0) {
            out->cls = carrier_keywords[k].cls;
            memcpy(out->keyword, up, len + 1);
            out->revocation = out->cls == KW_OPT_OUT;
            out->rule = "keyword";
            return;
        }
    }
}

void keywords_classify(const char *body, size_t len, kw_result_t *out)
{
    const unsigned char *s = (const unsigned char *)body;
    size_t start = 0, end;
    words_t ws;
    uint32_t opens;
    unsigned flags;

    memset(out, 0, sizeof(*out));
    out->rule = "none";
    if (!body)
        return;
    /* A body too long to scan cannot be a lone keyword either; only its head is read. */
    end = len > KEYWORDS_MAX_SCAN ? KEYWORDS_MAX_SCAN : len;
    trim(s, &start, &end);
    if (len <= KEYWORDS_MAX_SCAN)
        classify_exact(s + start, end - start, out);
    if (out->cls != KW_NONE)
        return;

    split_words(s + start, end - start, &ws);
    if (ws.n == 0)
        return;
    pthread_once(&vocab_once, vocab_build);
    opens = mark_words(&ws, &flags);
    /* No trigger word (courtesy words alone are none): no rule below can fire. */
    if (opens == 0 && !(flags & W_OPTOUT))
        return;
    if (ws.w[0].flags & W_STRONG) {
        out->revocation = 1;
        upper_copy(out->keyword, sizeof(out->keyword), ws.w[0].s);
        out->rule = "keyword+text";
        return;
    }
    if (flags & W_OPTOUT) {
        const char *r = filler_clause(&ws, out->keyword, sizeof(out->keyword));
        if (r) {
            out->revocation = 1;
            out->rule = r;
            return;
        }
    }
    for (size_t p = 0; p < NPHRASES; p++) {
        uint32_t bit = UINT32_C(1) << p;
        if (!(opens & bit))
            continue;
        for (int wi = 0; wi < ws.n; wi++) {
            if (!(ws.w[wi].opens & bit) && !(vocab.always & bit))
                continue;
            if (match_from(&ws, wi, phrases[p].pattern, 1) && !(phrases[p].negatable && negated(&ws, wi))) {
                out->revocation = 1;
                out->rule = phrases[p].rule;
                return;
            }
        }
    }
}

const char *keywords_class_name(kw_class_t cls)
{
    switch (cls) {
    case KW_OPT_OUT:
        return "opt-out";
    case KW_OPT_IN:
        return "opt-in";
    case KW_HELP:
        return "help";
    case KW_NONE:
        break;
    }
    return "none";
}
