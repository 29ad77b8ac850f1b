/*
 * Small helpers for the simulator: a string-keyed hash map with one int64 slot per
 * key (sender schedules, opt-outs), the fault RNG (splitmix64, seedable so a test
 * run is reproducible), the clock and base64.
 */
#include "sim.h"

#include "common/xalloc.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct entry {
    char *key; /* NULL: empty; TOMBSTONE: deleted */
    int64_t value;
} entry_t;

struct sim_strmap {
    entry_t *slots;
    size_t cap;  /* power of two */
    size_t used; /* live + tombstones */
};

static char tombstone_key;
#define TOMBSTONE (&tombstone_key)

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

sim_strmap_t *sim_strmap_new(void)
{
    sim_strmap_t *m = xcalloc(1, sizeof(*m));
    m->cap = 64;
    m->slots = xcalloc(m->cap, sizeof(entry_t));
    return m;
}

void sim_strmap_free(sim_strmap_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key && m->slots[i].key != TOMBSTONE)
            free(m->slots[i].key);
    free(m->slots);
    free(m);
}

static void grow(sim_strmap_t *m)
{
    entry_t *old = m->slots;
    size_t oldcap = m->cap;
    m->cap *= 2;
    m->slots = xcalloc(m->cap, sizeof(entry_t));
    m->used = 0;
    for (size_t i = 0; i < oldcap; i++) {
        if (!old[i].key || old[i].key == TOMBSTONE)
            continue;
        size_t j = hash_str(old[i].key) & (m->cap - 1);
        while (m->slots[j].key)
            j = (j + 1) & (m->cap - 1);
        m->slots[j] = old[i];
        m->used++;
    }
    free(old);
}

int64_t *sim_strmap_get(sim_strmap_t *m, const char *key, int create)
{
    size_t j = hash_str(key) & (m->cap - 1);
    entry_t *grave = NULL;
    while (m->slots[j].key) {
        if (m->slots[j].key == TOMBSTONE) {
            if (!grave)
                grave = &m->slots[j];
        } else if (strcmp(m->slots[j].key, key) == 0) {
            return &m->slots[j].value;
        }
        j = (j + 1) & (m->cap - 1);
    }
    if (!create)
        return NULL;
    if (!grave && (m->used + 1) * 4 > m->cap * 3) {
        grow(m);
        return sim_strmap_get(m, key, create);
    }
    entry_t *e = grave ? grave : &m->slots[j];
    if (!grave)
        m->used++;
    e->key = xstrdup(key);
    e->value = 0;
    return &e->value;
}

int sim_strmap_del(sim_strmap_t *m, const char *key)
{
    int64_t *v = sim_strmap_get(m, key, 0);
    if (!v)
        return 0;
    entry_t *e = (entry_t *)((char *)v - offsetof(entry_t, value));
    free(e->key);
    e->key = TOMBSTONE;
    return 1;
}

uint64_t sim_rand(sim_t *s)
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double sim_rand01(sim_t *s)
{
    return (double)(sim_rand(s) >> 11) * (1.0 / 9007199254740992.0);
}

int64_t sim_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sim_base64(const unsigned char *in, size_t n, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = tbl[v >> 18 & 63];
        out[o++] = tbl[v >> 12 & 63];
        out[o++] = i + 1 < n ? tbl[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? tbl[v & 63] : '=';
    }
    out[o] = '\0';
}
