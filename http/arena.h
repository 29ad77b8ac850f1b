/*
 * http_arena_t: a bump allocator for per-request scratch memory (h2o's req->pool,
 * PostgreSQL memory contexts). Allocations live until http_arena_reset() or
 * http_arena_close(); nothing is freed individually. The caller owns the struct
 * (init/close); the arena owns its chunks. Allocation failure aborts.
 */
#ifndef HERALD_HTTP_ARENA_H
#define HERALD_HTTP_ARENA_H
#include <stddef.h>

typedef struct http_arena_chunk http_arena_chunk_t;

typedef struct http_arena {
    http_arena_chunk_t *chunks; /* newest first; the last one is kept across resets */
    size_t chunk_size;
    size_t used; /* bytes used in the newest chunk */
} http_arena_t;

/* Prepares an empty arena whose chunks are chunk_size bytes (larger requests get their own). */
void http_arena_init(http_arena_t *a, size_t chunk_size);

/* Frees every chunk. The arena may be initialised again afterwards. */
void http_arena_close(http_arena_t *a);

/* Frees everything allocated so far but keeps the first chunk for reuse. */
void http_arena_reset(http_arena_t *a);

/* Returns n bytes aligned for any type; never NULL. Borrowed: valid until reset/close. */
void *http_arena_alloc(http_arena_t *a, size_t n);

/* Copies n bytes of s and a NUL into the arena. */
char *http_arena_strndup(http_arena_t *a, const char *s, size_t n);

#endif
