/*
 * Keyword folding: makes "JOIN", "join" and "Jóin" (or "INFORMACIÓN" and "informacion")
 * compare equal. ICU defines the folding (NFKD, case folding, NFKD again, combining marks
 * dropped) and the character classes (white space, punctuation); a table for the whole
 * BMP is built from it once per process so evaluation costs a table load per character
 * and neither allocates nor calls ICU, except for the rare supplementary-plane character.
 */
#include "routing/routing_int.h"
#include "common/xalloc.h"

#include <stdlib.h>

#include <pthread.h>
#include <string.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>

#define F_VALUE 0x1FFFFFu
#define F_MULTI (1u << 21) /* value is an offset into pool: count, then code points */
#define F_DROP (1u << 22)
#define F_SPACE (1u << 23)
#define F_PUNCT (1u << 24)

static uint32_t fold_tab[0x10000];
static uint32_t *pool;
static size_t pool_len;
static pthread_once_t fold_once = PTHREAD_ONCE_INIT;
static const UNormalizer2 *nfkd;

static int is_mark(UChar32 c)
{
    int8_t t = u_charType(c);
    return t == U_NON_SPACING_MARK || t == U_ENCLOSING_MARK;
}

/* Folds one code point into out[] (at most cap code points); returns the count, or -1. */
static int fold_cp(UChar32 cp, UChar32 *out, int cap)
{
    UChar a[64], b[64];
    int32_t n = 0, i = 0, k = 0;
    UErrorCode err = U_ZERO_ERROR;
    UBool bad = 0;

    U16_APPEND(a, n, 64, cp, bad);
    if (bad)
        return -1;
    n = unorm2_normalize(nfkd, a, n, b, 64, &err);
    if (U_FAILURE(err))
        return -1;
    n = u_strFoldCase(a, 64, b, n, U_FOLD_CASE_DEFAULT, &err);
    if (U_FAILURE(err))
        return -1;
    n = unorm2_normalize(nfkd, a, n, b, 64, &err);
    if (U_FAILURE(err))
        return -1;
    while (i < n) {
        UChar32 c;
        U16_NEXT(b, i, n, c);
        if (is_mark(c))
            continue;
        if (k == cap)
            return -1;
        out[k++] = c;
    }
    return k;
}

static uint32_t classify(UChar32 cp)
{
    /* Zero-width characters and controls separate words like white space does. */
    if (u_isUWhiteSpace(cp) || cp < 0x20 || cp == 0x7F || cp == 0x200B || cp == 0x200C || cp == 0x200D ||
        cp == 0x2060 || cp == 0xFEFF)
        return F_SPACE;
    if (u_ispunct(cp))
        return F_PUNCT;
    return 0;
}

static void build_table(void)
{
    UErrorCode err = U_ZERO_ERROR;
    size_t pool_cap = 4096;

    nfkd = unorm2_getNFKDInstance(&err);
    if (U_FAILURE(err))
        abort();
    pool = xmalloc(pool_cap * sizeof(*pool));
    for (UChar32 cp = 0; cp < 0x10000; cp++) {
        UChar32 f[18];
        uint32_t cls;
        int n;

        if (cp >= 0xD800 && cp <= 0xDFFF) {
            fold_tab[cp] = (uint32_t)cp;
            continue;
        }
        cls = classify(cp);
        n = fold_cp(cp, f, 18);
        if (n < 0) {
            fold_tab[cp] = (uint32_t)cp | cls;
        } else if (n == 0) {
            fold_tab[cp] = F_DROP | cls;
        } else if (n == 1) {
            fold_tab[cp] = (uint32_t)f[0] | cls;
        } else {
            if (pool_len + (size_t)n + 1 > pool_cap) {
                pool_cap *= 2;
                pool = xrealloc(pool, pool_cap * sizeof(*pool));
            }
            fold_tab[cp] = (uint32_t)pool_len | F_MULTI | cls;
            pool[pool_len++] = (uint32_t)n;
            for (int i = 0; i < n; i++)
                pool[pool_len++] = (uint32_t)f[i];
        }
    }
}

static size_t put_utf8(char *o, uint32_t c)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xC0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Decodes one code point of valid UTF-8 at s[*i] and advances *i. */
static uint32_t next_cp(const unsigned char *s, size_t len, size_t *i)
{
    uint32_t c = s[*i];
    size_t k = *i;

    if (c < 0x80) {
        *i = k + 1;
        return c;
    }
    if (c >= 0xF0 && k + 3 < len) {
        *i = k + 4;
        return ((c & 0x07) << 18) | ((s[k + 1] & 0x3Fu) << 12) | ((s[k + 2] & 0x3Fu) << 6) | (s[k + 3] & 0x3Fu);
    }
    if (c >= 0xE0 && k + 2 < len) {
        *i = k + 3;
        return ((c & 0x0F) << 12) | ((s[k + 1] & 0x3Fu) << 6) | (s[k + 2] & 0x3Fu);
    }
    if (c >= 0xC0 && k + 1 < len) {
        *i = k + 2;
        return ((c & 0x1F) << 6) | (s[k + 1] & 0x3Fu);
    }
    /* Not reached for valid input; take the byte as Latin-1 rather than loop. */
    *i = k + 1;
    return c;
}

int fold_text(const char *in, size_t len, routing_keyword_match_t mode, char *out, size_t cap)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0, n = 0, keep = 0;
    int started = 0, space = 0;

    pthread_once(&fold_once, build_table);
    while (i < len) {
        uint32_t cp = next_cp(s, len, &i), e, cls;
        uint32_t one[18];
        const uint32_t *cps = one;
        size_t ncp = 1;

        if (cp < 0x10000) {
            e = fold_tab[cp];
            cls = e & (F_SPACE | F_PUNCT);
            if (e & F_DROP) {
                ncp = 0;
            } else if (e & F_MULTI) {
                cps = &pool[(e & F_VALUE) + 1];
                ncp = pool[e & F_VALUE];
            } else {
                one[0] = e & F_VALUE;
            }
        } else {
            UChar32 f[18];
            int k;
            cls = classify((UChar32)cp);
            k = fold_cp((UChar32)cp, f, 18);
            if (k < 0) {
                one[0] = cp;
            } else {
                for (int j = 0; j < k; j++)
                    one[j] = (uint32_t)f[j];
                ncp = (size_t)k;
            }
        }
        if (cls & F_SPACE) {
            if (!started)
                continue;
            if (mode == ROUTING_MATCH_FIRST_WORD)
                break;
            space = 1;
            continue;
        }
        if (!started && (cls & F_PUNCT))
            continue;
        if (ncp == 0)
            continue;
        started = 1;
        if (space) {
            if (n + 1 > cap)
                return -1;
            out[n++] = ' ';
            space = 0;
        }
        for (size_t j = 0; j < ncp; j++) {
            if (n + 4 > cap)
                return -1;
            n += put_utf8(out + n, cps[j]);
        }
        if (!(cls & F_PUNCT))
            keep = n;
    }
    return (int)keep;
}

uint32_t fold_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

const kw_entry_t *kw_lookup(const kw_index_t *ix, const char *key, size_t len)
{
    uint32_t h;
    size_t mask, i;

    if (ix->cap == 0)
        return NULL;
    h = fold_hash(key, len);
    mask = ix->cap - 1;
    for (i = h & mask;; i = (i + 1) & mask) {
        const kw_entry_t *e = &ix->slots[i];
        if (!e->key)
            return NULL;
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
            return e;
    }
}
