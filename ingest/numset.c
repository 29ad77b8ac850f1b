/*
 * The within-file de-duplication set of stage 1 (ingest_int.h): E.164 numbers as the
 * integer of their digits (at most 15 digits, so never 0 and below 2^50), each with
 * the record number that brought it in first.
 *
 * Memory is what bounds an upload's RSS, so a number of up to 12 digits (below 2^40)
 * first seen in a record below 2^24 is packed with that record number into one 8-byte
 * slot; anything else goes to a small side table of 12-byte slots. Both are split into
 * 256 parts by hash, each an open-addressing table at most 3/4 full that doubles on its
 * own: growing copies 1/256 of the set at a time, so the peak is not twice the set.
 */
#include "ingest/ingest_int.h"
#include "common/xalloc.h"

#include <stdlib.h>
#include <string.h>

#define PACK_KEY_BITS 40
#define PACK_RN_BITS 24
#define PART_MIN_CAP 64u

static uint64_t mix(uint64_t key)
{
    /* splitmix64's finaliser: consecutive numbers spread over the table. */
    key ^= key >> 30;
    key *= 0xbf58476d1ce4e5b9ULL;
    key ^= key >> 27;
    key *= 0x94d049bb133111ebULL;
    key ^= key >> 31;
    return key;
}

void ingest_numset_init(ingest_numset_t *s)
{
    memset(s, 0, sizeof(*s));
}

void ingest_numset_close(ingest_numset_t *s)
{
    for (int i = 0; i < INGEST_NUMSET_PARTS; i++) {
        free(s->packed[i].slots);
        free(s->wide[i].keys);
        free(s->wide[i].vals);
    }
    memset(s, 0, sizeof(*s));
}

size_t ingest_numset_bytes(const ingest_numset_t *s)
{
    size_t b = 0;
    for (int i = 0; i < INGEST_NUMSET_PARTS; i++)
        b += s->packed[i].cap * sizeof(uint64_t) + s->wide[i].cap * (sizeof(uint64_t) + sizeof(uint32_t));
    return b;
}

/* ---- packed part: slot = key << 24 | rn ---- */

static size_t packed_find(const struct ingest_numset_packed *p, uint64_t key, uint64_t h, int *found)
{
    size_t i = (size_t)h & (p->cap - 1);

    *found = 0;
    while (p->slots[i] != 0) {
        if (p->slots[i] >> PACK_RN_BITS == key) {
            *found = 1;
            break;
        }
        i = (i + 1) & (p->cap - 1);
    }
    return i;
}

static void packed_grow(struct ingest_numset_packed *p)
{
    size_t cap = p->cap ? p->cap * 2 : PART_MIN_CAP;
    uint64_t *slots = xcalloc(cap, sizeof(*slots));

    for (size_t j = 0; j < p->cap; j++) {
        uint64_t v = p->slots[j];
        size_t i;
        if (v == 0)
            continue;
        for (i = (size_t)mix(v >> PACK_RN_BITS) & (cap - 1); slots[i] != 0; i = (i + 1) & (cap - 1))
            ;
        slots[i] = v;
    }
    free(p->slots);
    p->slots = slots;
    p->cap = cap;
}

/* ---- wide part: any key, any record number ---- */

static size_t wide_find(const struct ingest_numset_wide *w, uint64_t key, uint64_t h, int *found)
{
    size_t i = (size_t)h & (w->cap - 1);

    *found = 0;
    while (w->keys[i] != 0) {
        if (w->keys[i] == key) {
            *found = 1;
            break;
        }
        i = (i + 1) & (w->cap - 1);
    }
    return i;
}

static void wide_grow(struct ingest_numset_wide *w)
{
    size_t cap = w->cap ? w->cap * 2 : PART_MIN_CAP;
    uint64_t *keys = xcalloc(cap, sizeof(*keys));
    uint32_t *vals = xmalloc(cap * sizeof(*vals));

    for (size_t j = 0; j < w->cap; j++) {
        size_t i;
        if (w->keys[j] == 0)
            continue;
        for (i = (size_t)mix(w->keys[j]) & (cap - 1); keys[i] != 0; i = (i + 1) & (cap - 1))
            ;
        keys[i] = w->keys[j];
        vals[i] = w->vals[j];
    }
    free(w->keys);
    free(w->vals);
    w->keys = keys;
    w->vals = vals;
    w->cap = cap;
}

int ingest_numset_get(const ingest_numset_t *s, uint64_t key, uint32_t *val)
{
    uint64_t h = mix(key);
    unsigned part = (unsigned)(h >> 56);
    const struct ingest_numset_packed *p = &s->packed[part];
    const struct ingest_numset_wide *w = &s->wide[part];
    int found;
    size_t i;

    if (key == 0)
        return 0;
    if (p->n > 0 && key >> PACK_KEY_BITS == 0) {
        i = packed_find(p, key, h, &found);
        if (found) {
            *val = (uint32_t)(p->slots[i] & ((1u << PACK_RN_BITS) - 1));
            return 1;
        }
    }
    if (w->n > 0) {
        i = wide_find(w, key, h, &found);
        if (found) {
            *val = w->vals[i];
            return 1;
        }
    }
    return 0;
}

int ingest_numset_put(ingest_numset_t *s, uint64_t key, uint32_t val, uint32_t *first)
{
    uint64_t h = mix(key);
    unsigned part = (unsigned)(h >> 56);
    struct ingest_numset_packed *p = &s->packed[part];
    struct ingest_numset_wide *w = &s->wide[part];
    int found;
    size_t i;

    /* One probe per table: the probe that looks for the key also finds its free slot. */
    if (w->n > 0) {
        i = wide_find(w, key, h, &found);
        if (found) {
            *first = w->vals[i];
            return 1;
        }
    }
    if (key >> PACK_KEY_BITS == 0) {
        if ((p->n + 1) * 4 > p->cap * 3)
            packed_grow(p);
        i = packed_find(p, key, h, &found);
        if (found) {
            *first = (uint32_t)(p->slots[i] & ((1u << PACK_RN_BITS) - 1));
            return 1;
        }
        if (val >> PACK_RN_BITS == 0) {
            p->slots[i] = key << PACK_RN_BITS | val;
            p->n++;
            s->n++;
            return 0;
        }
    }
    if ((w->n + 1) * 4 > w->cap * 3)
        wide_grow(w);
    i = wide_find(w, key, h, &found);
    w->keys[i] = key;
    w->vals[i] = val;
    w->n++;
    s->n++;
    return 0;
}

uint64_t ingest_e164_key(const char *e164)
{
    uint64_t k = 0;
    int n = 0;

    if (!e164 || e164[0] != '+')
        return 0;
    for (const char *p = e164 + 1; *p; p++, n++) {
        if (*p < '0' || *p > '9' || n >= 15)
            return 0;
        k = k * 10 + (uint64_t)(*p - '0');
    }
    return n >= 2 ? k : 0;
}
