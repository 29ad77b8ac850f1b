/*
 * The registry of live rule sets, one per (org, receiving number). Readers take a
 * reference under a mutex held only long enough to copy a pointer and bump a count;
 * a reload publishes a freshly compiled set the same way. So a swap is atomic for
 * every reader: a message is evaluated entirely against the old set or the new one,
 * and the old set is freed by whoever drops its last reference.
 */
#include "routing/routing_int.h"
#include "common/xalloc.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct reg_entry {
    int64_t org_id;
    char *number;
    routing_ruleset_t *rs;
} reg_entry_t;

struct routing_registry {
    uv_mutex_t lock;
    reg_entry_t *v;
    size_t n, cap;
};

routing_registry_t *routing_registry_new(void)
{
    routing_registry_t *reg = xcalloc(1, sizeof(*reg));
    if (uv_mutex_init(&reg->lock) != 0)
        abort();
    return reg;
}

void routing_registry_free(routing_registry_t *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n; i++) {
        rules_unref(reg->v[i].rs);
        free(reg->v[i].number);
    }
    free(reg->v);
    uv_mutex_destroy(&reg->lock);
    free(reg);
}

static reg_entry_t *find(routing_registry_t *reg, int64_t org_id, const char *number)
{
    for (size_t i = 0; i < reg->n; i++)
        if (reg->v[i].org_id == org_id && strcmp(reg->v[i].number, number) == 0)
            return &reg->v[i];
    return NULL;
}

int routing_registry_swap(routing_registry_t *reg, int64_t org_id, const char *number, routing_ruleset_t *rs)
{
    routing_ruleset_t *old = NULL;
    reg_entry_t *e;

    uv_mutex_lock(&reg->lock);
    e = find(reg, org_id, number);
    if (e) {
        old = e->rs;
        if (rs) {
            e->rs = rs;
        } else {
            free(e->number);
            *e = reg->v[--reg->n];
        }
    } else if (rs) {
        if (reg->n == reg->cap) {
            reg->cap = reg->cap ? reg->cap * 2 : 8;
            reg->v = xrealloc(reg->v, reg->cap * sizeof(*reg->v));
        }
        reg->v[reg->n++] = (reg_entry_t){org_id, xstrdup(number), rs};
    }
    uv_mutex_unlock(&reg->lock);
    /* Outside the lock: freeing a large set must not hold up readers. */
    rules_unref(old);
    return 0;
}

routing_ruleset_t *routing_registry_acquire(routing_registry_t *reg, int64_t org_id, const char *number)
{
    routing_ruleset_t *rs = NULL;
    reg_entry_t *e;

    uv_mutex_lock(&reg->lock);
    e = find(reg, org_id, number);
    if (e)
        rs = rules_ref(e->rs);
    uv_mutex_unlock(&reg->lock);
    return rs;
}
