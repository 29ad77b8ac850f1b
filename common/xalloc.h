/* Allocation wrappers that abort on failure (h2o_mem_alloc, Redis zmalloc). */
#ifndef HERALD_COMMON_XALLOC_H
#define HERALD_COMMON_XALLOC_H
#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
