/*
 * A deterministic generator of realistic phone-number lines (US-heavy, with UK,
 * DE, FR and other international numbers, and ~8% invalid or garbage lines), for
 * bench/bench_phone, the phone unit test and the fuzz seeds. Same seed, same lines.
 */
#ifndef HERALD_COMPLIANCE_PHONE_CORPUS_H
#define HERALD_COMPLIANCE_PHONE_CORPUS_H
#include <stddef.h>
#include <stdint.h>

typedef struct phone_corpus {
    uint64_t state;
} phone_corpus_t;

/* Starts a sequence; seed 0 is allowed. */
void phone_corpus_init(phone_corpus_t *c, uint64_t seed);

/* Writes the next line into buf (NUL-terminated, truncated to cap-1) and returns its length. */
size_t phone_corpus_next(phone_corpus_t *c, char *buf, size_t cap);

#endif
