/*
 * bench_keywords: inbound keyword classification throughput on one core. Builds a
 * corpus of realistic inbound SMS replies (mostly ordinary conversation, some
 * carrier keywords, some free-text revocations, a few non-English and emoji
 * texts) and prints messages/s and ns/message for keywords_classify(), and for
 * the implementation before the fast reject (kept in tests/ as the reference),
 * after checking that both give the same answer on every message.
 * Usage: bench_keywords [SECONDS_PER_RUN] (default 1).
 */
#include "compliance/keywords.h"
#include "tests/unit/compliance/keywords_ref.inc"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CORPUS 4096

static const char *const ordinary[] = {
    "Yes I'll be there at 5",
    "Thanks! See you tomorrow",
    "What time does the store open on Sunday?",
    "Can I change my appointment to Thursday afternoon please",
    "ok",
    "Got it, thank you so much for the reminder 😊",
    "Is the sale still on? I wanted to get the blue one in a medium",
    "I can't stop smiling, the flowers were perfect",
    "When does the promotion end?",
    "My order #48213 hasn't arrived yet, can someone call me back",
    "Who is this?",
    "Sounds good 👍",
    "Do you deliver to 94110? My address is 123 Main St, apartment 4",
    "Merci, à demain !",
    "¿Cuál es el horario de hoy?",
    "Please send me the link again, it expired before I could use it",
    "Confirmed. Running 10 minutes late, sorry!",
    "Love this place, the staff are always great. Will recommend to my friends",
};

static const char *const revoking[] = {
    "STOP",
    "stop",
    "Stop.",
    "STOP please",
    "please stop texting me",
    "remove me from your list",
    "Unsubscribe",
    "take me off this list",
    "I don't want these messages anymore, stop sending them",
    "Do not text me again",
    "leave me alone",
    "cancel my subscription",
    "no more texts please",
    "HELP",
    "START",
    "optout",
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef void (*classify_fn)(const char *body, size_t len, kw_result_t *out);

static void run(const char *name, classify_fn fn, char **text, size_t *len, double seconds)
{
    unsigned long msgs = 0, revocations = 0;
    double t0 = now(), t;
    kw_result_t r;

    do {
        for (int i = 0; i < CORPUS; i++) {
            fn(text[i], len[i], &r);
            revocations += (unsigned long)r.revocation;
        }
        msgs += CORPUS;
        t = now() - t0;
    } while (t < seconds);
    printf("%-9s %12.0f msg/s %8.1f ns/msg  %4.1f%% revocations\n", name, (double)msgs / t,
           t * 1e9 / (double)msgs, 100.0 * (double)revocations / (double)msgs);
}

int main(int argc, char **argv)
{
    static char *text[CORPUS];
    static size_t len[CORPUS];
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    unsigned seed = 7;
    size_t bytes = 0;

    if (seconds <= 0) {
        fprintf(stderr, "usage: bench_keywords [SECONDS_PER_RUN]\n");
        return 2;
    }
    /* 90% ordinary replies, 10% keywords and revocations, as in a busy inbox. */
    for (int i = 0; i < CORPUS; i++) {
        seed = seed * 1103515245u + 12345u;
        if ((seed >> 8) % 10 == 0)
            text[i] = strdup(revoking[(seed >> 12) % (sizeof(revoking) / sizeof(revoking[0]))]);
        else
            text[i] = strdup(ordinary[(seed >> 12) % (sizeof(ordinary) / sizeof(ordinary[0]))]);
        len[i] = strlen(text[i]);
        bytes += len[i];
    }
    for (int i = 0; i < CORPUS; i++) {
        kw_result_t a, b;
        keywords_classify(text[i], len[i], &a);
        ref_keywords_classify(text[i], len[i], &b);
        if (a.cls != b.cls || a.revocation != b.revocation || strcmp(a.keyword, b.keyword) != 0 ||
            strcmp(a.rule, b.rule) != 0) {
            fprintf(stderr, "bench_keywords: results differ on \"%s\"\n", text[i]);
            return 1;
        }
    }
    printf("keywords_classify, one core, %d-message corpus (avg %.1f bytes), %.1f s per run\n", CORPUS,
           (double)bytes / CORPUS, seconds);
    run("current", keywords_classify, text, len, seconds);
    run("reference", ref_keywords_classify, text, len, seconds);
    for (int i = 0; i < CORPUS; i++)
        free(text[i]);
    return 0;
}
