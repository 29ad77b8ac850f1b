/*
 * SMS segment counting (see segments.h), written to give the same answers as
 * Twilio's calculator, sms-segments-calculator 1.3.0.
 *
 * The calculator packs characters into 140-octet segments in bits. When the
 * first segment overflows it gains a 6-octet header and hands its trailing whole
 * characters to the second segment; later segments carry the header from the
 * start. Because every character costs a whole number of units (7-bit septets or
 * 16-bit UTF-16 units) this is modelled exactly with unit counts: 160/153 septets
 * or 70/67 units. A character is a GSM-7 code point or, in UCS-2, a grapheme
 * cluster; one larger than a whole segment still occupies a segment of its own,
 * as in the calculator.
 *
 * GSM-7 text is counted in one pass with an ASCII fast path. At the first
 * character outside GSM-7 the text is counted again as UCS-2, with grapheme
 * clusters found by an incremental version of grapheme-splitter's rules: it keeps
 * the few facts about the cluster so far that those rules look at, so a cluster
 * of any length costs constant time per code point. ICU is not used because its
 * newer Unicode rules cluster some emoji and marks differently from the
 * calculator.
 */
#include "compliance/segments.h"
#include "compliance/segments_int.h"

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

/*
 * Per byte: septets (1 or 2) of a plain GSM-7 ASCII character, or SLOW for
 * anything that needs decoding, Smart Encoding or a UCS-2 decision.
 */
#define SLOW 4
#define R8(x) x, x, x, x, x, x, x, x
static const uint8_t byte_class[256] = {
    /* 0x00 */ SLOW, SLOW, SLOW, SLOW, SLOW, SLOW, SLOW, SLOW,
    /* 0x08 */ SLOW, SLOW, 1, SLOW, 2, 1, SLOW, SLOW,
    /* 0x10 */ R8(SLOW), R8(SLOW),
    /* 0x20 */ R8(1), R8(1), R8(1), R8(1), R8(1), R8(1), R8(1),
    /* 0x58 */ 1, 1, 1, 2, 2, 2, 2, 1,
    /* 0x60 */ SLOW, 1, 1, 1, 1, 1, 1, 1, R8(1), R8(1),
    /* 0x78 */ 1, 1, 1, 2, 2, 2, 2, SLOW,
    /* 0x80 */ R8(SLOW), R8(SLOW), R8(SLOW), R8(SLOW), R8(SLOW), R8(SLOW), R8(SLOW), R8(SLOW),
    /* 0xC0 */ R8(SLOW), R8(SLOW), R8(SLOW), R8(SLOW), R8(SLOW), R8(SLOW), R8(SLOW), R8(SLOW),
};

/* Non-ASCII code points of the GSM-7 basic table (the euro sign is an extension). */
static const uint16_t gsm_basic_nonascii[] = {
    0x00A1, 0x00A3, 0x00A4, 0x00A5, 0x00A7, 0x00BF, 0x00C4, 0x00C5, 0x00C6, 0x00C7,
    0x00C9, 0x00D1, 0x00D6, 0x00D8, 0x00DC, 0x00DF, 0x00E0, 0x00E4, 0x00E5, 0x00E6,
    0x00E8, 0x00E9, 0x00EC, 0x00F1, 0x00F2, 0x00F6, 0x00F8, 0x00F9, 0x00FC, 0x0393,
    0x0394, 0x0398, 0x039B, 0x039E, 0x03A0, 0x03A3, 0x03A6, 0x03A8, 0x03A9,
};

/* ASCII bytes that Smart Encoding replaces; they take the slow path in smart mode. */
static int ascii_is_smart(uint8_t b)
{
    switch (b) {
    case 0x00: case 0x03: case 0x04: case 0x09: case 0x10: case 0x11: case 0x12:
    case 0x13: case 0x14: case 0x17: case 0x19: case 0x60:
        return 1;
    default:
        return 0;
    }
}

static unsigned gsm_septets(uint32_t cp)
{
    size_t lo = 0, hi = sizeof(gsm_basic_nonascii) / sizeof(gsm_basic_nonascii[0]);

    if (cp < 0x80)
        return byte_class[cp] == SLOW ? 0 : byte_class[cp];
    if (cp == 0x20AC)
        return 2;
    if (cp > 0x03A9)
        return 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (gsm_basic_nonascii[mid] == cp)
            return 1;
        if (gsm_basic_nonascii[mid] < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/*
 * Direct-lookup copies of the sorted tables for the code points text is made of,
 * built once on first use: the grapheme class of every code point below
 * TABLE_LIMIT (the BMP and the emoji plane), and one bit per BMP code point that
 * Smart Encoding replaces. Past them the binary searches below still answer.
 */
#define TABLE_LIMIT 0x20000u
static uint8_t gcb_table[TABLE_LIMIT];
static uint64_t smart_bits[0x10000 / 64];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void tables_build(void)
{
    memset(gcb_table, GCB_OTHER, sizeof(gcb_table));
    for (size_t r = 0; r < gcb_nranges && gcb_ranges[r].first < TABLE_LIMIT; r++)
        for (uint32_t cp = gcb_ranges[r].first; cp <= gcb_ranges[r].last && cp < TABLE_LIMIT; cp++)
            gcb_table[cp] = gcb_ranges[r].cls;
    for (size_t i = 0; i < smart_map_len; i++)
        if (smart_map[i].cp < 0x10000)
            smart_bits[smart_map[i].cp / 64] |= UINT64_C(1) << (smart_map[i].cp % 64);
}

static const char *smart_lookup(uint32_t cp)
{
    size_t lo = 0, hi = smart_map_len;

    if (cp < 0x10000 && !(smart_bits[cp / 64] & (UINT64_C(1) << (cp % 64))))
        return NULL;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (smart_map[mid].cp == cp)
            return smart_map[mid].to;
        if (smart_map[mid].cp < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/*
 * Looks up the class of cp. *hint is the range index of the previous lookup:
 * text in one script mostly hits that range or the gap after it.
 */
static gcb_class_t gcb_of(uint32_t cp, size_t *hint)
{
    size_t lo = 0, hi = gcb_nranges, h = *hint;

    if (cp < 0x300) {
        if (cp == '\r')
            return GCB_CR;
        if (cp == '\n')
            return GCB_LF;
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0xAD)
            return GCB_CONTROL;
        return GCB_OTHER;
    }
    if (cp >= 0xAC00 && cp <= 0xD7A3)
        return (cp - 0xAC00) % 28 == 0 ? GCB_LV : GCB_LVT;
    if (cp < TABLE_LIMIT)
        return (gcb_class_t)gcb_table[cp];
    if (cp >= gcb_ranges[h].first) {
        if (cp <= gcb_ranges[h].last)
            return (gcb_class_t)gcb_ranges[h].cls;
        if (h + 1 == gcb_nranges || cp < gcb_ranges[h + 1].first)
            return GCB_OTHER;
    }
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp > gcb_ranges[mid].last) {
            lo = mid + 1;
        } else if (cp < gcb_ranges[mid].first) {
            hi = mid;
        } else {
            *hint = mid;
            return (gcb_class_t)gcb_ranges[mid].cls;
        }
    }
    /* In the gap after range lo - 1. */
    if (lo > 0)
        *hint = lo - 1;
    return GCB_OTHER;
}

/*
 * Decodes one strict UTF-8 sequence at s[*i] (the caller knows *i < len).
 * Returns 0 and advances *i, or -1 on an invalid or truncated sequence.
 */
static int utf8_next(const uint8_t *s, size_t len, size_t *i, uint32_t *cp)
{
    size_t p = *i, n;
    uint32_t c = s[p], min;

    if (c < 0x80) {
        *cp = c;
        *i = p + 1;
        return 0;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        n = 1;
        c &= 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 2;
        c &= 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 3;
        c &= 0x07;
        min = 0x10000;
    } else {
        return -1;
    }
    if (len - p - 1 < n)
        return -1;
    for (size_t k = 1; k <= n; k++) {
        uint8_t cc = s[p + k];
        if ((cc & 0xC0) != 0x80)
            return -1;
        c = (c << 6) | (cc & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return -1;
    *cp = c;
    *i = p + 1 + n;
    return 0;
}

/*
 * Code points of the text after optional Smart Encoding. A replacement is
 * printable ASCII, fed out one byte at a time from pend.
 */
typedef struct cp_iter {
    const uint8_t *s;
    size_t len, i;
    const char *pend;
    int smart;
} cp_iter_t;

/* Returns 1 with *cp set, 0 at the end, -1 on invalid UTF-8. */
static inline int iter_next(cp_iter_t *it, uint32_t *cp)
{
    for (;;) {
        if (it->pend && *it->pend) {
            *cp = (uint8_t)*it->pend++;
            return 1;
        }
        if (it->i >= it->len)
            return 0;
        if (utf8_next(it->s, it->len, &it->i, cp) != 0)
            return -1;
        if (it->smart && (*cp >= 0x80 || ascii_is_smart((uint8_t)*cp))) {
            const char *r = smart_lookup(*cp);
            if (r) {
                it->pend = r;
                continue;
            }
        }
        return 1;
    }
}

/* Segment packing, in units (septets or UTF-16 units) per character. */
typedef struct packer {
    size_t cap_single, cap_multi;
    size_t segments;
    size_t used;      /* units in the current segment; may exceed its capacity */
    size_t first_fit; /* while single: the longest prefix of whole characters within cap_multi */
} packer_t;

static void packer_init(packer_t *p, size_t single, size_t multi)
{
    p->cap_single = single;
    p->cap_multi = multi;
    p->segments = 1;
    p->used = 0;
    p->first_fit = 0;
}

static inline void packer_put(packer_t *p, size_t units)
{
    if (p->segments == 1) {
        if (p->used + units > p->cap_single) {
            /* The first segment takes its header and keeps only what still fits. */
            p->segments = 2;
            p->used = p->used - p->first_fit + units;
        } else {
            p->used += units;
            if (p->used <= p->cap_multi)
                p->first_fit = p->used;
        }
    } else if (p->used + units > p->cap_multi) {
        p->segments++;
        p->used = units;
    } else {
        p->used += units;
    }
}

/*
 * packer_put(p, 1) n times, in constant time: what a run of one-unit characters
 * (printable ASCII in UCS-2) does to the packing.
 */
static void packer_put_ones(packer_t *p, size_t n)
{
    size_t room;

    if (n == 0)
        return;
    if (p->segments == 1) {
        size_t take = p->cap_single - p->used; /* used <= cap_single while single */
        if (take > n)
            take = n;
        /* One at a time, first_fit follows used up to cap_multi. */
        if (p->used + take <= p->cap_multi)
            p->first_fit = p->used + take;
        else if (p->used <= p->cap_multi)
            p->first_fit = p->cap_multi;
        p->used += take;
        n -= take;
        if (n == 0)
            return;
        p->segments = 2;
        p->used = p->used - p->first_fit + 1;
        n--;
    }
    room = p->used < p->cap_multi ? p->cap_multi - p->used : 0;
    if (n <= room) {
        p->used += n;
        return;
    }
    n -= room;
    p->segments += (n + p->cap_multi - 1) / p->cap_multi;
    p->used = n % p->cap_multi ? n % p->cap_multi : p->cap_multi;
}

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/*
 * Whether all eight bytes are one-septet GSM-7 ASCII, conservatively: a false
 * "no" (for '_') only sends the word down the byte-by-byte loop.
 */
static inline int word_is_plain(uint64_t w)
{
    uint64_t control = (w - ONES * 0x20) & ~w & HIGHS;           /* a byte < 0x20 */
    uint64_t grave = ((w ^ (ONES * 0x60)) - ONES) & ~(w ^ (ONES * 0x60)) & HIGHS; /* '`' */
    uint64_t low5_high = ((w & (ONES * 0x1F)) + ONES * 0x05) & (ONES * 0x20); /* (b & 0x1F) >= 0x1B */
    uint64_t ext = low5_high & ((w & (ONES * 0x40)) >> 1);        /* 0x5B..0x5F, 0x7B..0x7F */

    return ((w & HIGHS) | control | grave | ext) == 0;
}

static unsigned clamp_unsigned(size_t n)
{
    return n > UINT_MAX ? UINT_MAX : (unsigned)n;
}

/*
 * Counts the text as GSM-7. Returns 1 when it is all GSM-7 (out filled), 0 at
 * the first character outside GSM-7, -1 on invalid UTF-8 before that point.
 */
static int count_gsm7(const uint8_t *s, size_t len, int smart, sms_info_t *out)
{
    packer_t pk;
    size_t i = 0, units = 0, cps = 0;
    unsigned seen = 0;

    /*
     * Most bodies are plain ASCII: sum septets eight bytes at a time, and when
     * no escape pair is present the segment count is plain arithmetic.
     */
    for (i = 0; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (!word_is_plain(w)) {
            for (size_t k = i; k < i + 8; k++) {
                units += byte_class[s[k]];
                seen |= byte_class[s[k]];
            }
            /* The shortcut below cannot apply any more: go straight to the full count. */
            if (seen & SLOW)
                break;
            continue;
        }
        units += 8;
        seen |= 1;
    }
    for (; i < len && !(seen & SLOW); i++) {
        units += byte_class[s[i]];
        seen |= byte_class[s[i]];
    }
    if (!(seen & SLOW) && (units <= SMS_GSM7_SINGLE || !(seen & 2))) {
        out->encoding = SMS_ENC_GSM7;
        out->segments = units <= SMS_GSM7_SINGLE
                            ? 1 : clamp_unsigned((units + SMS_GSM7_MULTI - 1) / SMS_GSM7_MULTI);
        out->characters = out->units = out->code_points = units;
        out->over_limit = units > SMS_MAX_UNITS;
        return 1;
    }
    i = 0;
    units = 0;
    packer_init(&pk, SMS_GSM7_SINGLE, SMS_GSM7_MULTI);
    while (i < len) {
        uint8_t b = s[i];
        uint32_t cp;
        unsigned n;

        if (byte_class[b] != SLOW) {
            n = byte_class[b];
            packer_put(&pk, n);
            units += n;
            cps++;
            i++;
            continue;
        }
        if (b < 0x80 && !(smart && ascii_is_smart(b)))
            return 0;
        if (utf8_next(s, len, &i, &cp) != 0)
            return -1;
        if (smart) {
            const char *r = smart_lookup(cp);
            if (r) {
                for (; *r; r++) {
                    n = byte_class[(uint8_t)*r]; /* GSM-7 by construction */
                    packer_put(&pk, n);
                    units += n;
                    cps++;
                }
                continue;
            }
        }
        n = gsm_septets(cp);
        if (n == 0)
            return 0;
        packer_put(&pk, n);
        units += n;
        cps++;
    }
    out->encoding = SMS_ENC_GSM7;
    out->segments = clamp_unsigned(pk.segments);
    out->characters = units;
    out->units = units;
    out->code_points = cps;
    out->over_limit = units > SMS_MAX_UNITS;
    return 1;
}

/*
 * The state of the grapheme cluster being built: what grapheme-splitter's
 * shouldBreak(start, mid, next) inspects, kept incrementally. start is the
 * cluster's first class, mid the classes after it.
 */
typedef struct cluster {
    gcb_class_t start;
    gcb_class_t prev;  /* last class of start+mid */
    gcb_class_t prev2; /* the one before prev (valid when mid_len >= 1) */
    size_t mid_len;
    size_t mid_lead_ri;  /* leading regional indicators of mid */
    size_t mid_ri;       /* regional indicators anywhere in mid */
    int mid_all_extend;  /* every class of mid is Extend */
    int has_extend;      /* Extend occurs in start+mid */
} cluster_t;

static void cluster_begin(cluster_t *c, gcb_class_t cls)
{
    c->start = c->prev = c->prev2 = cls;
    c->mid_len = 0;
    c->mid_lead_ri = 0;
    c->mid_ri = 0;
    c->mid_all_extend = 1;
    c->has_extend = cls == GCB_EXTEND;
}

static int is_ebase(gcb_class_t k)
{
    return k == GCB_E_BASE || k == GCB_E_BASE_GAZ;
}

/*
 * grapheme-splitter's shouldBreak(), rule for rule, including its quirks (for
 * instance, a regional-indicator pair followed by two Extend characters breaks
 * before the second one). CR LF breaks too: the calculator splits "\r\n" clusters
 * back into two characters.
 */
static int cluster_breaks(const cluster_t *c, gcb_class_t next)
{
    gcb_class_t prev = c->prev;
    int ri_run;

    if (next == GCB_OTHER && prev == GCB_OTHER)
        return 1;

    if (next == GCB_E_MODIFIER && c->mid_len > 0 && c->mid_all_extend && c->start != GCB_EXTEND &&
        !is_ebase(c->start))
        return 1;
    if (next == GCB_RI)
        ri_run = c->mid_lead_ri == c->mid_len;
    else
        ri_run = c->mid_ri > 0 && c->mid_lead_ri == c->mid_ri;
    if (ri_run && prev != GCB_PREPEND && prev != GCB_RI)
        return 1;
    if (prev == GCB_CR || prev == GCB_LF || prev == GCB_CONTROL)
        return 1;
    if (next == GCB_CR || next == GCB_LF || next == GCB_CONTROL)
        return 1;
    if (prev == GCB_L && (next == GCB_L || next == GCB_V || next == GCB_LV || next == GCB_LVT))
        return 0;
    if ((prev == GCB_LV || prev == GCB_V) && (next == GCB_V || next == GCB_T))
        return 0;
    if ((prev == GCB_LVT || prev == GCB_T) && next == GCB_T)
        return 0;
    if (next == GCB_EXTEND || next == GCB_ZWJ || next == GCB_SPACINGMARK)
        return 0;
    if (prev == GCB_PREPEND)
        return 0;
    if (next == GCB_E_MODIFIER) {
        if (!c->has_extend && is_ebase(prev))
            return 0;
        if (prev == GCB_EXTEND && c->mid_len >= 1 && is_ebase(c->prev2))
            return 0;
    }
    if (prev == GCB_ZWJ && (next == GCB_GAZ || next == GCB_E_BASE_GAZ))
        return 0;
    if (c->mid_ri > 0)
        return 1;
    if (prev == GCB_RI && next == GCB_RI)
        return 0;
    return 1;
}

static void cluster_extend(cluster_t *c, gcb_class_t cls)
{
    if (cls == GCB_RI) {
        if (c->mid_lead_ri == c->mid_len)
            c->mid_lead_ri++;
        c->mid_ri++;
    }
    if (cls != GCB_EXTEND)
        c->mid_all_extend = 0;
    else
        c->has_extend = 1;
    c->mid_len++;
    c->prev2 = c->prev;
    c->prev = cls;
}

/* Counts the text as UCS-2. Returns 0, or -1 on invalid UTF-8. */
static int count_ucs2(const uint8_t *s, size_t len, int smart, sms_info_t *out)
{
    cp_iter_t it = {s, len, 0, NULL, smart};
    packer_t pk;
    cluster_t cl;
    size_t units = 0, cps = 0, clusters = 0, cl_units = 0, hint = 0;
    uint32_t cp;
    int r;

    packer_init(&pk, SMS_UCS2_SINGLE, SMS_UCS2_MULTI);
    cluster_begin(&cl, GCB_OTHER);
    for (;;) {
        size_t u;
        gcb_class_t cls;

        /* Plain GSM-7 ASCII needs neither decoding nor a table search. */
        if (!(it.pend && *it.pend) && it.i < len && byte_class[s[it.i]] != SLOW) {
            size_t run = 1;
            cp = s[it.i++];
            cls = cp >= 0x20 ? GCB_OTHER : cp == '\n' ? GCB_LF : cp == '\r' ? GCB_CR : GCB_CONTROL;
            r = 1;
            if (cls == GCB_OTHER) {
                size_t j = it.i;
                for (; j + 8 <= len; j += 8) {
                    uint64_t w;
                    memcpy(&w, s + j, 8);
                    if (!word_is_plain(w))
                        break;
                }
                while (j < len && s[j] >= 0x20 && byte_class[s[j]] != SLOW)
                    j++;
                run += j - it.i;
            }
            if (run > 1) {
                /*
                 * A run of printable ASCII: after its first character the cluster
                 * ends in Other, and Other then Other always breaks, so every later
                 * character but the last closes a one-unit cluster.
                 */
                size_t more = run - 1;
                if (clusters == 0) {
                    clusters = 1;
                    cl_units = 1;
                } else if (cluster_breaks(&cl, cls)) {
                    packer_put(&pk, cl_units);
                    clusters++;
                    cl_units = 1;
                } else {
                    cl_units += 1;
                }
                packer_put(&pk, cl_units);
                packer_put_ones(&pk, more - 1);
                cluster_begin(&cl, GCB_OTHER);
                cl_units = 1;
                clusters += more;
                cps += run;
                units += run;
                it.i += more;
                continue;
            }
        } else {
            r = iter_next(&it, &cp);
            if (r <= 0)
                break;
            cls = gcb_of(cp, &hint);
        }
        u = cp >= 0x10000 ? 2 : 1;

        cps++;
        units += u;
        if (clusters == 0) {
            cluster_begin(&cl, cls);
            clusters = 1;
            cl_units = u;
        } else if (cluster_breaks(&cl, cls)) {
            packer_put(&pk, cl_units);
            cluster_begin(&cl, cls);
            clusters++;
            cl_units = u;
        } else {
            cluster_extend(&cl, cls);
            cl_units += u;
        }
    }
    if (r < 0)
        return -1;
    if (clusters > 0)
        packer_put(&pk, cl_units);
    out->encoding = SMS_ENC_UCS2;
    out->segments = clamp_unsigned(pk.segments);
    out->characters = clusters;
    out->units = units;
    out->code_points = cps;
    out->over_limit = units > SMS_MAX_UNITS;
    return 0;
}

int sms_analyze(const char *utf8, size_t len, unsigned flags, sms_info_t *out)
{
    const uint8_t *s = (const uint8_t *)utf8;
    int smart = (flags & SMS_SMART_ENCODING) != 0;
    int r;

    if (len == 0)
        s = (const uint8_t *)"";
    pthread_once(&tables_once, tables_build);
    r = count_gsm7(s, len, smart, out);
    if (r < 0)
        return SMS_EUTF8;
    if (r > 0)
        return 0;
    return count_ucs2(s, len, smart, out) == 0 ? 0 : SMS_EUTF8;
}

int sms_smart_encode(const char *utf8, size_t len, buf_t *out)
{
    const uint8_t *s = (const uint8_t *)utf8;
    size_t i = 0, run = 0;

    if (len == 0)
        return 0;
    pthread_once(&tables_once, tables_build);
    /* Unreplaced stretches are copied as runs, not character by character. */
    while (i < len) {
        size_t at = i;
        uint32_t cp;
        const char *r;

        if (utf8_next(s, len, &i, &cp) != 0)
            return SMS_EUTF8;
        r = smart_lookup(cp);
        if (!r)
            continue;
        if (buf_append(out, s + run, at - run) != 0 || buf_puts(out, r) != 0)
            return SMS_ETOOBIG;
        run = i;
    }
    if (buf_append(out, s + run, len - run) != 0)
        return SMS_ETOOBIG;
    return 0;
}

const char *sms_encoding_name(sms_encoding_t enc)
{
    return enc == SMS_ENC_UCS2 ? "UCS-2" : "GSM-7";
}

const char *sms_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case SMS_EUTF8:
        return "text is not valid UTF-8";
    case SMS_ETOOBIG:
        return "text too long for the output buffer";
    default:
        return "unknown segments error";
    }
}
