/*
 * Capped growable buffer (see buf.h). Allocation failure aborts, as in h2o and
 * Redis: the process cannot do anything useful without memory, and checking every
 * small allocation would hide the checks that matter (the caps).
 */
#include "common/buf.h"
#include "common/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(buf_t *b, size_t limit)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->limit = limit;
}

void buf_close(buf_t *b)
{
    free(b->data);
    buf_init(b, b->limit);
}

void buf_reset(buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static int ensure(buf_t *b, size_t extra)
{
    size_t need;

    if (extra > b->limit - b->len)
        return BUF_ETOOBIG;
    need = b->len + extra + 1;
    if (need > b->cap) {
        size_t ncap = b->cap ? b->cap : 64;
        while (ncap < need)
            ncap *= 2;
        b->data = xrealloc(b->data, ncap);
        b->cap = ncap;
    }
    return 0;
}

int buf_append_grow(buf_t *b, const void *p, size_t n)
{
    if (ensure(b, n) != 0)
        return BUF_ETOOBIG;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int buf_puts(buf_t *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || ensure(b, (size_t)n) != 0)
        return BUF_ETOOBIG;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

const char *buf_str(const buf_t *b)
{
    return b->data ? b->data : "";
}

char *buf_take(buf_t *b, size_t *len)
{
    char *p = b->data ? b->data : xstrdup("");

    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
