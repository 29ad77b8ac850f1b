/*
 * bench_segments: segment counting throughput on one core. Builds three corpora
 * of realistic bodies (GSM-7 marketing texts; UCS-2 texts with accents, Cyrillic
 * and emoji including ZWJ sequences and flags; a mix of 85% GSM-7 and 15% UCS-2)
 * and prints messages/s and ns/message for sms_analyze(), with and without Smart
 * Encoding. Usage: bench_segments [SECONDS_PER_RUN] (default 1).
 */
#include "compliance/segments.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CORPUS 4096

typedef struct corpus {
    const char *name;
    char *text[CORPUS];
    size_t len[CORPUS];
    size_t bytes;
} corpus_t;

static const char *const gsm_templates[] = {
    "Hi %s! Our spring sale starts today: 20%% off everything in store and online. Use code SPRING20. "
    "Reply STOP to opt out",
    "%s, your order #%d has shipped and will arrive Thursday. Track it at https://ex.co/t/%d",
    "Reminder: your appointment with Dr. Smith is tomorrow at 10:30. Reply C to confirm or R to "
    "reschedule. Reply STOP to opt out",
    "Flash deal for %s: buy 1 get 1 free on all pizzas until 9pm tonight! Show this text in store. "
    "Msg&data rates may apply. Reply HELP for help, STOP to cancel.",
    "%s, your verification code is %d. It expires in 10 minutes.",
    "Hey %s, thanks for joining our VIP club! Every Friday you'll get exclusive offers, early access to "
    "new arrivals and members-only events near you. Prices from 5 EUR, see https://ex.co/vip/%d for the "
    "full list of stores, opening hours and terms. Reply STOP to opt out",
    "Don't miss it %s: doors open at 7pm, tickets {VIP} at the box office. Reply STOP to end",
};

static const char *const ucs2_templates[] = {
    "Hi %s 👋 our summer sale is ON ☀️ 30%% off everything today only! Code: SUN30 🎉",
    ("Bonjour %s, votre commande n°%d est prête ✅ Retrait en magasin dès demain. Répondez STOP pour "
     "vous désinscrire"),
    "%s, спасибо за заказ №%d! Доставка завтра с 10:00 до 14:00 🚚",
    "Happy birthday %s 🎂🎁 enjoy a free coffee ☕ on us this week 👨‍👩‍👧‍👦 bring the family! 🇺🇸",
    "Olá %s! A sua encomenda %d foi enviada 📦 Obrigado 🙏🏽",
    "Sale “today only” — 50%% off… %s, don’t miss it! Reply STOP to opt out",
};

static const char *const names[] = {"Anna", "Bob", "Chloé", "Dmitri", "Eve", "Farid", "Grace", "Hiro"};

static void fill(corpus_t *c, const char *name, int ucs2_percent, unsigned seed)
{
    c->name = name;
    c->bytes = 0;
    for (int i = 0; i < CORPUS; i++) {
        char tmp[1024];
        int ucs2 = (int)(seed % 100) < ucs2_percent;
        const char *fmt;
        int n;

        seed = seed * 1103515245u + 12345u;
        if (ucs2)
            fmt = ucs2_templates[(seed >> 8) % (sizeof(ucs2_templates) / sizeof(ucs2_templates[0]))];
        else
            fmt = gsm_templates[(seed >> 8) % (sizeof(gsm_templates) / sizeof(gsm_templates[0]))];
        /* Every template takes (name, number, number) or a prefix of them. */
        n = snprintf(tmp, sizeof(tmp), fmt, names[(seed >> 16) % 8], (int)(seed % 100000),
                     (int)(seed % 977));
        c->text[i] = strdup(tmp);
        c->len[i] = (size_t)n;
        c->bytes += (size_t)n;
        seed = seed * 1103515245u + 12345u;
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void run(const corpus_t *c, unsigned flags, double seconds)
{
    volatile unsigned long sink = 0;
    unsigned long msgs = 0, segs = 0, ucs2 = 0;
    double t0 = now(), t;
    sms_info_t info;

    do {
        for (int i = 0; i < CORPUS; i++) {
            if (sms_analyze(c->text[i], c->len[i], flags, &info) != 0)
                abort();
            segs += info.segments;
            ucs2 += info.encoding == SMS_ENC_UCS2;
        }
        msgs += CORPUS;
        t = now() - t0;
    } while (t < seconds);
    sink = segs;
    (void)sink;
    printf("%-6s %-5s %12.0f msg/s %8.1f ns/msg  avg %5.1f bytes  %4.1f%% UCS-2  %.2f segments/msg\n",
           c->name, flags ? "smart" : "plain", (double)msgs / t, t * 1e9 / (double)msgs,
           (double)c->bytes / CORPUS, 100.0 * (double)ucs2 / (double)msgs, (double)segs / (double)msgs);
}

int main(int argc, char **argv)
{
    static corpus_t gsm, ucs2, mixed;
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;

    if (seconds <= 0) {
        fprintf(stderr, "usage: bench_segments [SECONDS_PER_RUN]\n");
        return 2;
    }
    fill(&gsm, "gsm", 0, 1);
    fill(&ucs2, "ucs2", 100, 2);
    fill(&mixed, "mixed", 15, 3);
    printf("sms_analyze, one core, %d-message corpora, %.1f s per run\n", CORPUS, seconds);
    run(&gsm, 0, seconds);
    run(&ucs2, 0, seconds);
    run(&mixed, 0, seconds);
    run(&gsm, SMS_SMART_ENCODING, seconds);
    run(&ucs2, SMS_SMART_ENCODING, seconds);
    run(&mixed, SMS_SMART_ENCODING, seconds);
    for (int i = 0; i < CORPUS; i++) {
        free(gsm.text[i]);
        free(ucs2.text[i]);
        free(mixed.text[i]);
    }
    return 0;
}
