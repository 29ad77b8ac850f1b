/*
 * libFuzzer driver for the form / query-string parser. Besides not crashing, every
 * successful parse must round-trip: re-encoding each decoded pair with
 * http_form_encode() and parsing again gives the same names and values.
 */
#include "http/form.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    http_arena_t arena;
    http_arena_init(&arena, 1024);
    http_form_limits_t lim = {.max_fields = 64, .max_field_len = 512, .max_input = 8192};
    http_form_t f;
    http_form_error_t err;
    int rc = http_form_parse((const char *)data, size, &lim, &arena, &f, &err);
    if (rc != 0) {
        if (err.offset > size && rc != HTTP_FORM_ETOOLONG)
            abort();
        http_arena_close(&arena);
        return 0;
    }
    size_t cap = 3 * size + 16;
    char *enc = malloc(cap);
    size_t o = 0;
    for (size_t i = 0; i < f.count; i++) {
        if (strlen(f.params[i].name) != f.params[i].name_len ||
            strlen(f.params[i].value) != f.params[i].value_len)
            abort();
        if (i)
            enc[o++] = '&';
        long n = http_form_encode(f.params[i].name, enc + o, cap - o);
        if (n < 0)
            abort();
        o += (size_t)n;
        enc[o++] = '=';
        n = http_form_encode(f.params[i].value, enc + o, cap - o);
        if (n < 0)
            abort();
        o += (size_t)n;
    }
    http_form_t g;
    http_form_limits_t lim2 = {.max_fields = 64, .max_field_len = 512, .max_input = cap};
    if (http_form_parse(enc, o, &lim2, &arena, &g, NULL) != 0)
        abort();
    /* Empty pairs vanish, but a pair with an empty name and value ("=") survives encoding. */
    size_t j = 0;
    for (size_t i = 0; i < f.count; i++) {
        if (j >= g.count || strcmp(f.params[i].name, g.params[j].name) != 0 ||
            strcmp(f.params[i].value, g.params[j].value) != 0)
            abort();
        j++;
    }
    if (j != g.count)
        abort();
    free(enc);
    http_arena_close(&arena);
    return 0;
}
