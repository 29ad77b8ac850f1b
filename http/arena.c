/*
 * Per-request bump allocator. Requests allocate a handful of small strings (form
 * fields, extra response headers) and drop them all at once when the response is
 * written, so a chunk list with one kept chunk avoids malloc/free per field.
 */
#include "http/arena.h"

#include "common/xalloc.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

struct http_arena_chunk {
    http_arena_chunk_t *next;
    size_t size;
    alignas(max_align_t) unsigned char data[];
};

void http_arena_init(http_arena_t *a, size_t chunk_size)
{
    a->chunks = NULL;
    a->chunk_size = chunk_size < 256 ? 256 : chunk_size;
    a->used = 0;
}

void http_arena_close(http_arena_t *a)
{
    http_arena_chunk_t *c = a->chunks;
    while (c) {
        http_arena_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    a->chunks = NULL;
    a->used = 0;
}

void http_arena_reset(http_arena_t *a)
{
    http_arena_chunk_t *c = a->chunks;
    if (!c)
        return;
    while (c->next) {
        http_arena_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    a->chunks = c;
    /* The survivor is the oldest chunk; only a standard-size one is worth keeping. */
    if (c->size != a->chunk_size) {
        free(c);
        a->chunks = NULL;
    }
    a->used = 0;
}

void *http_arena_alloc(http_arena_t *a, size_t n)
{
    const size_t align = alignof(max_align_t);
    n = (n + align - 1) & ~(align - 1);
    if (n == 0)
        n = align;
    if (a->chunks && a->chunks->size - a->used >= n) {
        void *p = a->chunks->data + a->used;
        a->used += n;
        return p;
    }
    size_t size = n > a->chunk_size ? n : a->chunk_size;
    http_arena_chunk_t *c = xmalloc(sizeof(*c) + size);
    c->size = size;
    if (size != a->chunk_size && a->chunks) {
        /* An oversized block goes behind the current chunk so its free space stays usable. */
        c->next = a->chunks->next;
        a->chunks->next = c;
        return c->data;
    }
    c->next = a->chunks;
    a->chunks = c;
    a->used = n;
    return c->data;
}

char *http_arena_strndup(http_arena_t *a, const char *s, size_t n)
{
    char *p = http_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
