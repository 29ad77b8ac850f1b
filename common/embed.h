/* Files compiled into a binary by cmake/embed.cmake (SQL migrations and the like). */
#ifndef HERALD_COMMON_EMBED_H
#define HERALD_COMMON_EMBED_H
#include <stddef.h>

typedef struct herald_embedded {
    const char *name; /* base file name, e.g. "001_initial.sql"; NULL ends a table */
    const char *data; /* NUL-terminated contents (the NUL is not counted in len) */
    size_t len;
} herald_embedded_t;

#endif
