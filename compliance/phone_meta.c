/*
 * Reads the phone-number metadata that libphonenumber compiles into itself (a
 * serialized PhoneMetadataCollection, resources/phonemetadata.proto) so that the
 * fast path can compile the same validation patterns. Only the fields the fast
 * path needs are kept, as pointers into libphonenumber's static bytes. A small
 * protobuf wire-format reader is enough here and keeps libprotobuf out of the
 * link; any malformed or unexpected encoding makes the table empty, which only
 * turns the fast path off.
 */
#include "compliance/phone_int.h"
#include "common/xalloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Field numbers from phonemetadata.proto. */
enum {
    F_COLLECTION_METADATA = 1,
    F_DESC_PATTERN = 2,
    F_DESC_EXAMPLE = 6,
    F_DESC_POSSIBLE_LENGTH = 9,
    F_META_ID = 9,
    F_META_COUNTRY_CODE = 10,
    F_META_INTERNATIONAL_PREFIX = 11,
    F_META_NPFP = 15,
    F_META_SAME_MOBILE_FIXED = 18,
    F_META_LEADING_DIGITS = 23,
};

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

typedef struct reader {
    const unsigned char *p;
    const unsigned char *end;
    int bad;
} reader_t;

static uint64_t read_varint(reader_t *r)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) {
            r->bad = 1;
            return 0;
        }
        unsigned char b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    r->bad = 1;
    return 0;
}

/* Reads one field header and its payload; a LEN payload comes back as a sub-reader. */
static int read_field(reader_t *r, int *field, int *wt, uint64_t *value, reader_t *sub)
{
    uint64_t key, n;

    *value = 0; /* only the payload of the wire type read is set below */
    sub->p = sub->end = r->p;
    sub->bad = 0;
    if (r->p >= r->end || r->bad)
        return 0;
    key = read_varint(r);
    *field = (int)(key >> 3);
    *wt = (int)(key & 7);
    switch (*wt) {
    case WT_VARINT:
        *value = read_varint(r);
        break;
    case WT_I64:
    case WT_I32:
        n = *wt == WT_I64 ? 8 : 4;
        if ((uint64_t)(r->end - r->p) < n)
            r->bad = 1;
        else
            r->p += n;
        break;
    case WT_LEN:
        n = read_varint(r);
        if (r->bad || (uint64_t)(r->end - r->p) < n) {
            r->bad = 1;
            break;
        }
        sub->p = r->p;
        sub->end = r->p + n;
        sub->bad = 0;
        r->p += n;
        break;
    default:
        r->bad = 1;
    }
    return !r->bad;
}

static void add_length(phone_desc_t *d, int64_t len)
{
    d->has_lengths = 1;
    if (len >= 0 && len < 32)
        d->lengths |= (uint32_t)1 << len;
}

static int read_desc(reader_t *r, phone_desc_t *d)
{
    int field, wt;
    uint64_t v;
    reader_t sub;

    memset(d, 0, sizeof(*d));
    while (read_field(r, &field, &wt, &v, &sub)) {
        if (field == F_DESC_PATTERN && wt == WT_LEN) {
            d->pattern = (const char *)sub.p;
            d->pattern_len = (size_t)(sub.end - sub.p);
        } else if (field == F_DESC_EXAMPLE && wt == WT_LEN) {
            d->example = (const char *)sub.p;
            d->example_len = (size_t)(sub.end - sub.p);
        } else if (field == F_DESC_POSSIBLE_LENGTH && wt == WT_VARINT) {
            add_length(d, (int64_t)(int32_t)v);
        } else if (field == F_DESC_POSSIBLE_LENGTH && wt == WT_LEN) {
            while (sub.p < sub.end && !sub.bad)
                add_length(d, (int64_t)(int32_t)read_varint(&sub));
            if (sub.bad)
                return -1;
        }
    }
    return r->bad ? -1 : 0;
}

/* PhoneMetadata field number -> our desc slot, or -1. */
static int desc_slot(int field)
{
    switch (field) {
    case 1: return PHONE_DESC_GENERAL;
    case 2: return PHONE_DESC_FIXED_LINE;
    case 3: return PHONE_DESC_MOBILE;
    case 4: return PHONE_DESC_TOLL_FREE;
    case 5: return PHONE_DESC_PREMIUM;
    case 6: return PHONE_DESC_SHARED_COST;
    case 7: return PHONE_DESC_PERSONAL;
    case 8: return PHONE_DESC_VOIP;
    case 21: return PHONE_DESC_PAGER;
    case 25: return PHONE_DESC_UAN;
    case 28: return PHONE_DESC_VOICEMAIL;
    default: return -1;
    }
}

static int read_meta(reader_t *r, phone_meta_t *m)
{
    int field, wt, slot;
    uint64_t v;
    reader_t sub;

    memset(m, 0, sizeof(*m));
    while (read_field(r, &field, &wt, &v, &sub)) {
        slot = desc_slot(field);
        if (slot >= 0 && wt == WT_LEN) {
            if (read_desc(&sub, &m->desc[slot]) < 0)
                return -1;
        } else if (field == F_META_ID && wt == WT_LEN) {
            size_t n = (size_t)(sub.end - sub.p);
            if (n == 0 || n > 3)
                return -1;
            memcpy(m->id, sub.p, n);
            m->id[n] = '\0';
        } else if (field == F_META_COUNTRY_CODE && wt == WT_VARINT) {
            m->country_code = (int)v;
        } else if (field == F_META_INTERNATIONAL_PREFIX && wt == WT_LEN) {
            m->idd = (const char *)sub.p;
            m->idd_len = (size_t)(sub.end - sub.p);
        } else if (field == F_META_NPFP && wt == WT_LEN) {
            m->npfp = (const char *)sub.p;
            m->npfp_len = (size_t)(sub.end - sub.p);
        } else if (field == F_META_LEADING_DIGITS && wt == WT_LEN) {
            m->leading_digits = (const char *)sub.p;
            m->leading_digits_len = (size_t)(sub.end - sub.p);
        } else if (field == F_META_SAME_MOBILE_FIXED && wt == WT_VARINT) {
            m->same_mobile_and_fixed_line = v != 0;
        }
    }
    return r->bad || !m->id[0] ? -1 : 0;
}

static phone_meta_t *metas;
static size_t nmetas;
static pthread_once_t metas_once = PTHREAD_ONCE_INIT;

static void load_metas(void)
{
    const unsigned char *data;
    size_t len, cap = 0, n = 0;
    phone_meta_t *v = NULL;
    reader_t r, sub;
    int field, wt;
    uint64_t val;

    phone_lpn_metadata(&data, &len);
    r.p = data;
    r.end = data + len;
    r.bad = 0;
    while (read_field(&r, &field, &wt, &val, &sub)) {
        if (field != F_COLLECTION_METADATA || wt != WT_LEN)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            v = xrealloc(v, cap * sizeof(*v));
        }
        if (read_meta(&sub, &v[n]) < 0) {
            r.bad = 1;
            break;
        }
        n++;
    }
    if (r.bad) {
        free(v);
        return;
    }
    metas = v;
    nmetas = n;
}

const phone_meta_t *phone_meta_find(const char *id, int cc)
{
    int nongeo = strcmp(id, "001") == 0;

    pthread_once(&metas_once, load_metas);
    for (size_t i = 0; i < nmetas; i++) {
        if (strcmp(metas[i].id, id) != 0)
            continue;
        if (!nongeo || metas[i].country_code == cc)
            return &metas[i];
    }
    return NULL;
}
