/*
 * Opt-out footer (see footer.h): decides whether a message needs opt-out
 * language, recognises language that is already there, appends the footer and
 * reports the cost in segments.
 *
 * Recognition works on a normalised copy of the body: ASCII letters lowercased,
 * every run of spaces and ASCII punctuation (except the apostrophe inside a word)
 * turned into one space, other bytes kept. The configured footer matches as a
 * whole-word phrase of that copy; the common phrasings are matched on its words,
 * always around the word "stop", so a "stop" without an instruction around it
 * does not count.
 */
#include "compliance/footer.h"
#include "common/xalloc.h"

#include <stdlib.h>
#include <string.h>

/* Normalised words remembered behind the current one. */
#define WINDOW 6

typedef struct word {
    const char *p;
    size_t n;
} word_t;

static int is_word_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

/*
 * Writes the normalised form of s into dst (room for len + 1 bytes): words
 * separated by single spaces, no leading or trailing space. Returns its length.
 */
static size_t normalise(const char *s, size_t len, char *dst)
{
    size_t o = 0;
    int pending_space = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int apostrophe = c == '\'' && o > 0 && !pending_space && i + 1 < len &&
                         is_word_byte((unsigned char)s[i + 1]);

        if (!is_word_byte(c) && !apostrophe) {
            pending_space = o > 0;
            continue;
        }
        if (pending_space)
            dst[o++] = ' ';
        pending_space = 0;
        dst[o++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    dst[o] = '\0';
    return o;
}

static int word_is(word_t w, const char *lit)
{
    size_t n = strlen(lit);
    return w.n == n && memcmp(w.p, lit, n) == 0;
}

static int word_in(word_t w, const char *const *set)
{
    for (; *set; set++)
        if (word_is(w, *set))
            return 1;
    return 0;
}

static const char *const verbs[] = {"reply", "rply", "text", "txt", "send", "respond", "answer",
                                    "msg", "sms", "type", NULL};
/* Words allowed between a verb and STOP: "reply with STOP", "text the word STOP". */
static const char *const fillers[] = {"with", "back", "the", "word", "keyword", NULL};
/* "STOP to <end>". */
static const char *const ends[] = {"end", "opt", "optout", "unsubscribe", "unsub", "cancel",
                                   "quit", "stop", "remove", "leave", NULL};
static const char *const optout_words[] = {"unsubscribe", "unsub", "optout", NULL};

/* w[0] is the newest word, w[k] the k-th before it; nw of them are valid. */
static int phrase_ends_here(const word_t *w, size_t nw)
{
    if (word_is(w[0], "stop")) {
        size_t k = 1;
        while (k < nw && k <= 3 && word_in(w[k], fillers))
            k++;
        if (k < nw && word_in(w[k], verbs))
            return 1;
        /* "to unsubscribe, STOP" / "opt out: STOP" within a few words. */
        for (k = 1; k < nw && k <= 4; k++) {
            if (word_in(w[k], optout_words))
                return 1;
            if (k + 1 < nw && word_is(w[k], "out") && word_is(w[k + 1], "opt"))
                return 1;
        }
        return 0;
    }
    if (nw >= 3 && word_is(w[2], "stop") && word_is(w[1], "to") && word_in(w[0], ends))
        return 1;
    /* "STOP ... unsubscribe" / "STOP ... opt out" within a few words. */
    if (word_in(w[0], optout_words) || (nw >= 2 && word_is(w[0], "out") && word_is(w[1], "opt"))) {
        for (size_t k = 1; k < nw && k <= 4; k++)
            if (word_is(w[k], "stop"))
                return 1;
    }
    return 0;
}

static int has_phrase(const char *norm, size_t len)
{
    word_t win[WINDOW];
    size_t nw = 0, i = 0;

    while (i < len) {
        size_t j = i;
        while (j < len && norm[j] != ' ')
            j++;
        memmove(win + 1, win, sizeof(win[0]) * (WINDOW - 1));
        win[0].p = norm + i;
        win[0].n = j - i;
        if (nw < WINDOW)
            nw++;
        if (phrase_ends_here(win, nw))
            return 1;
        i = j + 1;
    }
    return 0;
}

/* Whether needle occurs in hay as whole words (both normalised). */
static int has_words(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
    const char *p = hay, *end = hay + hlen;

    if (nlen == 0)
        return 0;
    while ((size_t)(end - p) >= nlen) {
        const char *m = memchr(p, needle[0], (size_t)(end - p) - nlen + 1);
        if (!m)
            return 0;
        if (memcmp(m, needle, nlen) == 0 && (m == hay || m[-1] == ' ') &&
            (m + nlen == end || m[nlen] == ' '))
            return 1;
        p = m + 1;
    }
    return 0;
}

int footer_has_optout(const char *body, size_t len, const char *footer)
{
    char fnorm[FOOTER_MAX_TEXT + 1], stack_norm[4096];
    size_t flen = 0, blen;
    char *bnorm;
    int found;

    if (!footer)
        footer = FOOTER_DEFAULT_TEXT;
    if (strlen(footer) <= FOOTER_MAX_TEXT)
        flen = normalise(footer, strlen(footer), fnorm);
    /* Bodies are short (a rendered SMS): normalise on the stack unless this one is not. */
    bnorm = len < sizeof(stack_norm) ? stack_norm : xmalloc(len + 1);
    blen = normalise(body, len, bnorm);
    found = has_words(bnorm, blen, fnorm, flen) || has_phrase(bnorm, blen);
    if (bnorm != stack_norm)
        free(bnorm);
    return found;
}

int footer_apply(const char *body, const char *footer, footer_policy_t policy, int is_first_message,
                 unsigned sms_flags, buf_t *out, footer_result_t *res)
{
    size_t blen = strlen(body), flen, start = out->len;
    sms_info_t before, after;

    if (!footer)
        footer = FOOTER_DEFAULT_TEXT;
    flen = strlen(footer);
    if (flen == 0 || flen > FOOTER_MAX_TEXT)
        return FOOTER_EINVAL;
    if (sms_analyze(footer, flen, sms_flags, &after) != 0 ||
        sms_analyze(body, blen, sms_flags, &before) != 0)
        return FOOTER_EUTF8;
    switch (policy) {
    case FOOTER_POLICY_FIRST:
        res->required = is_first_message != 0;
        break;
    case FOOTER_POLICY_ALWAYS:
        res->required = 1;
        break;
    case FOOTER_POLICY_NEVER:
        res->required = 0;
        break;
    default:
        return FOOTER_EINVAL;
    }
    res->already_present = footer_has_optout(body, blen, footer);
    res->appended = res->required && !res->already_present;
    if (buf_append(out, body, blen) != 0)
        return FOOTER_ETOOBIG;
    if (res->appended) {
        if (blen > 0 && body[blen - 1] != '\n' && buf_puts(out, FOOTER_SEPARATOR) != 0)
            return FOOTER_ETOOBIG;
        if (buf_append(out, footer, flen) != 0)
            return FOOTER_ETOOBIG;
        if (sms_analyze(out->data + start, out->len - start, sms_flags, &after) != 0)
            return FOOTER_EUTF8;
    } else {
        after = before;
    }
    res->segments_before = before.segments;
    res->segments_after = after.segments;
    res->added_segments = after.segments - before.segments;
    res->encoding_before = before.encoding;
    res->encoding_after = after.encoding;
    res->encoding_changed = before.encoding == SMS_ENC_GSM7 && after.encoding == SMS_ENC_UCS2;
    res->over_limit = after.over_limit;
    return 0;
}

int footer_policy_parse(const char *name, footer_policy_t *out)
{
    if (strcmp(name, "first") == 0)
        *out = FOOTER_POLICY_FIRST;
    else if (strcmp(name, "always") == 0)
        *out = FOOTER_POLICY_ALWAYS;
    else if (strcmp(name, "never") == 0)
        *out = FOOTER_POLICY_NEVER;
    else
        return FOOTER_EINVAL;
    return 0;
}

const char *footer_policy_name(footer_policy_t policy)
{
    switch (policy) {
    case FOOTER_POLICY_FIRST:
        return "first";
    case FOOTER_POLICY_ALWAYS:
        return "always";
    case FOOTER_POLICY_NEVER:
        return "never";
    }
    return "unknown";
}

const char *footer_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case FOOTER_EUTF8:
        return "body or footer is not valid UTF-8";
    case FOOTER_ETOOBIG:
        return "message too long for the output buffer";
    case FOOTER_EINVAL:
        return "footer text must be 1 to 160 bytes and the policy first, always or never";
    default:
        return "unknown footer error";
    }
}
