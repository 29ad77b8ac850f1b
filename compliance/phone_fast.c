/*
 * The fast path of phone_normalize(), in C, plus the input checks both paths
 * share.
 *
 * libphonenumber's Parse costs ~20 us (ICU regexes, UTF-8 walks, RFC 3966 and
 * extension handling) and IsValidNumber another ~10-20 us (ICU regexes looked up
 * by pattern text under a lock). Most campaign numbers are in one of two shapes
 * whose Parse result is known without running Parse:
 *   - "+" then digits and the punctuation " -.()": the calling code is the first
 *     1-3 digits that form a valid code (ExtractCountryCode), the rest is the
 *     national significant number (NSN), unless the country's
 *     national_prefix_for_parsing matches its start;
 *   - with default region US, 10 digits starting 2-9, or 11 digits "1" + 2-9...,
 *     with the same punctuation: calling code 1, NSN = the last 10 digits.
 * Everything else (letters, other punctuation, IDD prefixes, non-ASCII, too few
 * or too many digits, any national prefix) is declined and handed to the full
 * path. For a split number, validity and region are decided exactly as
 * GetRegionCodeForNumber + IsValidNumberForRegion decide them, with the same
 * metadata patterns compiled into DFAs (phone_re.c); only the reason for an
 * invalid number is asked of libphonenumber (a cheap length check).
 *
 * Each calling code's tables are built on first use, under a mutex, and are
 * published with a release store; readers never lock. When they are built they
 * are cross-checked against libphonenumber on the metadata's example numbers
 * and variations of them; any construct the compiler does not handle or any
 * disagreement turns the fast path off for that calling code.
 */
#include "common/utf8.h"
#include "compliance/phone_int.h"
#include "common/log.h"
#include "common/xalloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DECLINE 1
#define MAX_CC 1000
#define MAX_REGIONS 64
#define MAX_DIGITS 24

/* ---- input checks ---- */

static int is_blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int phone_input_check(const char *in, size_t len)
{
    const unsigned char *p = (const unsigned char *)in;
    int blank = 1;
    size_t i = 0, n;

    if (len == 0)
        return PHONE_EEMPTY;
    if (!in)
        return PHONE_ENOTANUMBER;
    if (len > PHONE_INPUT_MAX)
        return PHONE_ETOOLONG;
    while (i < len) {
        if (p[i] == 0)
            return PHONE_ENOTANUMBER;
        if (p[i] < 0x80) {
            if (!is_blank(p[i]))
                blank = 0;
            i++;
            continue;
        }
        n = utf8_seq(p + i, len - i);
        if (n == 0)
            return PHONE_ENOTANUMBER;
        blank = 0;
        i += n;
    }
    return blank ? PHONE_EEMPTY : 0;
}

/* ---- regions ---- */

static uint8_t region_ok[26][26];
static pthread_once_t regions_once = PTHREAD_ONCE_INIT;

static void load_regions(void)
{
    char r[3] = {0};
    for (int a = 0; a < 26; a++)
        for (int b = 0; b < 26; b++) {
            r[0] = (char)('A' + a);
            r[1] = (char)('A' + b);
            region_ok[a][b] = (uint8_t)phone_lpn_region_supported(r);
        }
}

static int upper(int c)
{
    return c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c;
}

int phone_region_arg(const char *region, char out[3])
{
    int a, b;

    out[0] = '\0';
    if (!region || !region[0])
        return 0;
    a = upper((unsigned char)region[0]);
    b = upper((unsigned char)region[1]);
    if (a < 'A' || a > 'Z' || b < 'A' || b > 'Z' || region[2] != '\0')
        return PHONE_EREGION;
    pthread_once(&regions_once, load_regions);
    if (!region_ok[a - 'A'][b - 'A'])
        return PHONE_EREGION;
    out[0] = (char)a;
    out[1] = (char)b;
    out[2] = '\0';
    return 0;
}

/* ---- per calling code tables ---- */

typedef struct ptype {
    uint32_t lengths;
    int has_lengths;
    phone_dfa_t *dfa; /* NULL: empty pattern, never matches */
} ptype_t;

typedef struct pregion {
    char id[4];
    phone_dfa_t *leading; /* when has_leading */
    int has_leading;
    int same_mobile_and_fixed_line;
    ptype_t type[PHONE_DESC_COUNT];
} pregion_t;

typedef struct ccinfo {
    int cc;
    int nregions;
    pregion_t *regions;
    phone_dfa_t *npfp; /* main region's national_prefix_for_parsing; NULL if none */
} ccinfo_t;

static ccinfo_t cc_unsupported; /* sentinel: leave this code to libphonenumber */
static _Atomic(ccinfo_t *) cc_table[MAX_CC];
static pthread_mutex_t cc_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t cc_valid[MAX_CC];
static int us_national_ok; /* the US assumptions of the national shape hold */
static pthread_once_t cc_once = PTHREAD_ONCE_INIT;

static int type_match(const ptype_t *t, const char *nsn, size_t n)
{
    if (t->has_lengths && (n >= 32 || !((t->lengths >> n) & 1u)))
        return 0;
    return t->dfa && phone_dfa_full(t->dfa, nsn, n);
}

/* GetNumberTypeHelper(nsn) != UNKNOWN. */
static int type_known(const pregion_t *r, const char *nsn, size_t n)
{
    if (!type_match(&r->type[PHONE_DESC_GENERAL], nsn, n))
        return 0;
    for (int k = PHONE_DESC_PREMIUM; k <= PHONE_DESC_FIXED_LINE; k++)
        if (type_match(&r->type[k], nsn, n))
            return 1;
    return !r->same_mobile_and_fixed_line && type_match(&r->type[PHONE_DESC_MOBILE], nsn, n);
}

/* GetRegionCodeForNumber, then IsValidNumberForRegion; *region NULL means "ZZ". */
static int evaluate(const ccinfo_t *c, const char *nsn, size_t n, const pregion_t **region)
{
    if (c->nregions == 1) {
        *region = &c->regions[0];
        return type_known(&c->regions[0], nsn, n);
    }
    for (int i = 0; i < c->nregions; i++) {
        const pregion_t *r = &c->regions[i];
        if (r->has_leading) {
            if (phone_dfa_prefix(r->leading, nsn, n)) {
                *region = r;
                return type_known(r, nsn, n);
            }
        } else if (type_known(r, nsn, n)) {
            *region = r;
            return 1;
        }
    }
    *region = NULL;
    return 0;
}

static void free_ccinfo(ccinfo_t *c)
{
    for (int i = 0; i < c->nregions; i++) {
        phone_dfa_free(c->regions[i].leading);
        for (int k = 0; k < PHONE_DESC_COUNT; k++)
            phone_dfa_free(c->regions[i].type[k].dfa);
    }
    free(c->regions);
    phone_dfa_free(c->npfp);
    free(c);
}

static int compile_region(pregion_t *r, const phone_meta_t *m)
{
    memcpy(r->id, m->id, sizeof(r->id));
    r->same_mobile_and_fixed_line = m->same_mobile_and_fixed_line;
    if (m->leading_digits) {
        r->has_leading = 1;
        r->leading = phone_dfa_compile(m->leading_digits, m->leading_digits_len);
        if (!r->leading)
            return -1;
    }
    for (int k = 0; k < PHONE_DESC_COUNT; k++) {
        const phone_desc_t *d = &m->desc[k];
        r->type[k].lengths = d->lengths;
        r->type[k].has_lengths = d->has_lengths;
        if (d->pattern && d->pattern_len) {
            r->type[k].dfa = phone_dfa_compile(d->pattern, d->pattern_len);
            if (!r->type[k].dfa)
                return -1;
        }
    }
    return 0;
}

/* 0 if our verdict on (cc, nsn) equals libphonenumber's. */
static int cross_check(const ccinfo_t *c, const char *nsn, size_t n)
{
    const pregion_t *r;
    char lr[4];
    int ours, theirs;

    if (n < PHONE_NSN_MIN || n > PHONE_NSN_MAX)
        return 0;
    ours = evaluate(c, nsn, n, &r);
    theirs = phone_lpn_verdict(c->cc, nsn, n, lr);
    if (ours != theirs || strcmp(r ? r->id : "ZZ", lr) != 0)
        return -1;
    return 0;
}

/* Checks every example number, and each with its last digit changed and dropped. */
static int self_test(const ccinfo_t *c, const phone_meta_t *const *metas)
{
    char buf[PHONE_NSN_MAX + 1];

    for (int i = 0; i < c->nregions; i++) {
        for (int k = 0; k < PHONE_DESC_COUNT; k++) {
            const phone_desc_t *d = &metas[i]->desc[k];
            size_t n = d->example_len;
            if (!d->example || n < PHONE_NSN_MIN || n > PHONE_NSN_MAX)
                continue;
            memcpy(buf, d->example, n);
            for (size_t j = 0; j < n; j++)
                if (buf[j] < '0' || buf[j] > '9')
                    return -1;
            if (cross_check(c, buf, n) < 0 || cross_check(c, buf, n - 1) < 0)
                return -1;
            for (int v = 1; v < 10; v += 4) {
                buf[n - 1] = (char)('0' + (d->example[n - 1] - '0' + v) % 10);
                if (cross_check(c, buf, n) < 0)
                    return -1;
            }
        }
    }
    return 0;
}

static ccinfo_t *build_ccinfo(int cc)
{
    char ids[MAX_REGIONS][4];
    const phone_meta_t *metas[MAX_REGIONS];
    ccinfo_t *c;
    int n = phone_lpn_regions(cc, ids, MAX_REGIONS);

    if (n <= 0 || n > MAX_REGIONS)
        return &cc_unsupported;
    c = xcalloc(1, sizeof(*c));
    c->cc = cc;
    c->regions = xcalloc((size_t)n, sizeof(pregion_t));
    c->nregions = n;
    for (int i = 0; i < n; i++) {
        metas[i] = phone_meta_find(ids[i], cc);
        if (!metas[i] || metas[i]->country_code != cc || compile_region(&c->regions[i], metas[i]) < 0)
            goto unsupported;
    }
    /* ParseHelper strips the national prefix with the main region's metadata. */
    if (metas[0]->npfp && metas[0]->npfp_len) {
        c->npfp = phone_dfa_compile(metas[0]->npfp, metas[0]->npfp_len);
        if (!c->npfp)
            goto unsupported;
    }
    if (self_test(c, metas) < 0) {
        log_warn("phone: fast path disabled for +%d (tables disagree with libphonenumber)", cc);
        goto unsupported;
    }
    return c;

unsupported:
    free_ccinfo(c);
    return &cc_unsupported;
}

static void init_cc(void)
{
    char ids[MAX_REGIONS][4];
    const phone_meta_t *us;

    for (int cc = 1; cc < MAX_CC; cc++)
        cc_valid[cc] = phone_lpn_regions(cc, ids, MAX_REGIONS) > 0;
    /*
     * The national shape relies on these US facts (see MaybeExtractCountryCode):
     * the IDD is 011, so no 10/11-digit national number is taken as international;
     * the general possible lengths stop at 10, so "1" + 10 digits is TOO_LONG
     * and the leading 1 is always stripped as the country code.
     */
    us = phone_meta_find("US", 1);
    us_national_ok = us && us->country_code == 1 && us->idd && us->idd_len == 3 &&
                     memcmp(us->idd, "011", 3) == 0 &&
                     us->desc[PHONE_DESC_GENERAL].has_lengths &&
                     (us->desc[PHONE_DESC_GENERAL].lengths >> 11) == 0;
}

static const ccinfo_t *get_ccinfo(int cc)
{
    ccinfo_t *c = atomic_load_explicit(&cc_table[cc], memory_order_acquire);

    if (c)
        return c == &cc_unsupported ? NULL : c;
    pthread_mutex_lock(&cc_lock);
    c = atomic_load_explicit(&cc_table[cc], memory_order_relaxed);
    if (!c) {
        c = build_ccinfo(cc);
        atomic_store_explicit(&cc_table[cc], c, memory_order_release);
    }
    pthread_mutex_unlock(&cc_lock);
    return c == &cc_unsupported ? NULL : c;
}

/* ---- the fast path ---- */

/*
 * Returns PHONE_OK or an error when the input was in a known shape, DECLINE
 * otherwise. The input has passed phone_input_check().
 */
static int fast(const char *in, size_t len, const char *region, phone_result_t *out)
{
    char d[MAX_DIGITS];
    size_t nd = 0, nsn_len;
    int plus = 0, ascii = 1, other = 0, cc = 0;
    const char *nsn;
    const ccinfo_t *c;
    const pregion_t *r;

    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch >= '0' && ch <= '9') {
            if (nd == MAX_DIGITS)
                return DECLINE;
            d[nd++] = (char)ch;
        } else if (ch == '+') {
            if (plus || nd)
                other = 1;
            plus = 1;
        } else if (ch == ' ' || ch == '-' || ch == '.' || ch == '(' || ch == ')') {
            continue;
        } else {
            other = 1;
            if (ch >= 0x80)
                ascii = 0;
        }
    }
    /* Parse finds no digit to start a number at: NOT_A_NUMBER, whatever else is there. */
    if (nd == 0 && ascii)
        return PHONE_ENOTANUMBER;
    if (other)
        return DECLINE;
    pthread_once(&cc_once, init_cc);
    if (plus) {
        if (nd <= PHONE_NSN_MIN || d[0] == '0')
            return DECLINE;
        for (int i = 1; i <= 3 && !cc; i++) {
            int v = 0;
            for (int j = 0; j < i; j++)
                v = v * 10 + (d[j] - '0');
            if (cc_valid[v])
                cc = v;
        }
        if (!cc)
            return DECLINE;
        nsn = d + (cc >= 100 ? 3 : cc >= 10 ? 2 : 1);
        nsn_len = nd - (size_t)(nsn - d);
    } else {
        if (!us_national_ok || strcmp(region, "US") != 0)
            return DECLINE;
        if (nd == 10 && d[0] >= '2')
            nsn = d;
        else if (nd == 11 && d[0] == '1' && d[1] >= '2')
            nsn = d + 1;
        else
            return DECLINE;
        nsn_len = 10;
        cc = 1;
    }
    if (nsn_len < PHONE_NSN_MIN || nsn_len > PHONE_NSN_MAX)
        return DECLINE;
    c = get_ccinfo(cc);
    if (!c || (c->npfp && phone_dfa_prefix(c->npfp, nsn, nsn_len)))
        return DECLINE;

    out->country_code = cc;
    if (!evaluate(c, nsn, nsn_len, &r)) {
        if (r && r->id[2] == '\0')
            memcpy(out->region, r->id, 3);
        return phone_lpn_invalid_reason(cc, nsn, nsn_len);
    }
    if (r->id[2] == '\0')
        memcpy(out->region, r->id, 3);
    if (1 + (cc >= 100 ? 3 : cc >= 10 ? 2 : 1) + nsn_len >= sizeof(out->e164))
        return PHONE_ETOOLONG;
    snprintf(out->e164, sizeof(out->e164), "+%d%.*s", cc, (int)nsn_len, nsn);
    return PHONE_OK;
}

int phone_normalize(const char *input, size_t len, const char *default_region, phone_result_t *out)
{
    char region[3];
    int rc;

    memset(out, 0, sizeof(*out));
    rc = phone_region_arg(default_region, region);
    if (rc < 0)
        return rc;
    rc = phone_input_check(input, len);
    if (rc < 0)
        return rc;
    rc = fast(input, len, region, out);
    if (rc != DECLINE)
        return rc;
    return phone_normalize_full(input, len, default_region, out);
}

const char *phone_strerror(int err)
{
    switch (err) {
    case PHONE_OK: return "valid";
    case PHONE_EEMPTY: return "empty";
    case PHONE_ENOTANUMBER: return "not a phone number";
    case PHONE_ETOOSHORT: return "too short";
    case PHONE_ETOOLONG: return "too long";
    case PHONE_EINVALID: return "not a valid number for its region";
    case PHONE_ECOUNTRY: return "unknown country calling code";
    case PHONE_EREGION: return "unknown default region";
    case PHONE_ENOTFOUND: return "no description for this number";
    case PHONE_ENOSPACE: return "output buffer too small";
    default: return "unknown error";
    }
}

const char *phone_reason(int err)
{
    switch (err) {
    case PHONE_OK: return "valid";
    case PHONE_EEMPTY: return "empty";
    case PHONE_ENOTANUMBER: return "not_a_number";
    case PHONE_ETOOSHORT: return "too_short";
    case PHONE_ETOOLONG: return "too_long";
    case PHONE_EINVALID: return "invalid_for_region";
    case PHONE_ECOUNTRY: return "unknown_country_code";
    case PHONE_EREGION: return "unknown_region";
    case PHONE_ENOTFOUND: return "not_found";
    case PHONE_ENOSPACE: return "no_space";
    default: return "unknown";
    }
}
