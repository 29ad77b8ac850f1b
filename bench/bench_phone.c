/*
 * bench_phone: phone-number normalization throughput on one core.
 * Generates a deterministic US-heavy corpus (compliance/phone_corpus.c), runs it
 * through phone_normalize_full() (libphonenumber only) and phone_normalize()
 * (fast path with fallback), prints numbers/s for each and the speedup, and
 * compares every result of the two paths; exits 1 if any differs.
 *
 *   bench_phone [COUNT] [REGION]     defaults: 250000 US
 */
#include "compliance/phone.h"
#include "compliance/phone_corpus.h"
#include "common/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINE_CAP 64

typedef struct entry {
    char text[LINE_CAP];
    size_t len;
} entry_t;

typedef struct outcome {
    int rc;
    phone_result_t res;
} outcome_t;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef int (*normalize_fn)(const char *, size_t, const char *, phone_result_t *);

static double run(normalize_fn fn, const entry_t *in, outcome_t *out, size_t n, const char *region)
{
    double t = now();
    for (size_t i = 0; i < n; i++)
        out[i].rc = fn(in[i].text, in[i].len, region, &out[i].res);
    return now() - t;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 250000;
    const char *region = argc > 2 ? argv[2] : "US";
    entry_t *in;
    outcome_t *full, *fast;
    phone_corpus_t pc;
    phone_result_t warm;
    size_t mismatches = 0, valid = 0;
    double tfull, tfast;

    if (n == 0 || n > 50000000) {
        fprintf(stderr, "usage: bench_phone [COUNT (1..50000000)] [REGION]\n");
        return 2;
    }
    in = xmalloc(n * sizeof(*in));
    full = xcalloc(n, sizeof(*full));
    fast = xcalloc(n, sizeof(*fast));
    phone_corpus_init(&pc, 42);
    for (size_t i = 0; i < n; i++)
        in[i].len = phone_corpus_next(&pc, in[i].text, sizeof(in[i].text));

    /* One-time table building (libphonenumber's and ours) is not what we measure. */
    for (size_t i = 0; i < n && i < 2000; i++) {
        if (phone_normalize(in[i].text, in[i].len, region, &warm) == PHONE_EREGION ||
            phone_normalize_full(in[i].text, in[i].len, region, &warm) == PHONE_EREGION) {
            fprintf(stderr, "bench_phone: unknown region '%s'\n", region);
            return 2;
        }
    }

    tfull = run(phone_normalize_full, in, full, n, region);
    tfast = run(phone_normalize, in, fast, n, region);

    for (size_t i = 0; i < n; i++) {
        if (full[i].rc == PHONE_OK)
            valid++;
        if (full[i].rc != fast[i].rc || strcmp(full[i].res.e164, fast[i].res.e164) != 0 ||
            strcmp(full[i].res.region, fast[i].res.region) != 0 ||
            full[i].res.country_code != fast[i].res.country_code) {
            if (mismatches < 10)
                fprintf(stderr, "mismatch: '%s': full %s %s %s %d, fast %s %s %s %d\n", in[i].text,
                        phone_reason(full[i].rc), full[i].res.e164, full[i].res.region,
                        full[i].res.country_code, phone_reason(fast[i].rc), fast[i].res.e164,
                        fast[i].res.region, fast[i].res.country_code);
            mismatches++;
        }
    }
    printf("corpus:     %zu numbers (region %s), %zu valid (%.1f%%)\n", n, region, valid,
           100.0 * (double)valid / (double)n);
    printf("full path:  %.0f numbers/s (%.2f us/number)\n", (double)n / tfull, 1e6 * tfull / (double)n);
    printf("fast path:  %.0f numbers/s (%.2f us/number)\n", (double)n / tfast, 1e6 * tfast / (double)n);
    printf("speedup:    %.1fx\n", tfull / tfast);
    printf("mismatches: %zu\n", mismatches);
    free(in);
    free(full);
    free(fast);
    return mismatches ? 1 : 0;
}
