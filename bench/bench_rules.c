/*
 * Rule evaluation throughput: 100 rules (keywords in both match modes, case-insensitive
 * regexes, a last "any"), a mixed corpus of inbound bodies (keyword hits, regex hits,
 * accented text, and a majority that falls through every rule to "any"), evaluated on one
 * core with one reused decision. Prints messages/s and the load average beside it, since
 * other builds may share the machine. Two figures: rule evaluation with the carrier-keyword
 * result supplied (routing_input_t.carrier, as the webhook passes it: it classifies each
 * message once for compliance anyway), and the same with keywords_classify() run inside
 * routing_evaluate() on every message.
 *   build/bench/bench_rules [MESSAGES]      (default 2,000,000)
 */
#include "routing/routing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const words[] = {
    "JOIN", "MENU", "HOURS", "PROMO", "DEAL", "COUPON", "VIP", "ORDER", "TRACK", "RETURN", "REFUND", "APPT",
    "BOOK", "CANCELAPPT", "RESCHEDULE", "WIN", "ENTER", "VOTE", "SURVEY", "FEEDBACK", "DONATE", "GIVE", "EVENT",
    "RSVP", "TICKETS", "JOBS", "APPLY", "CAREERS", "INFO2", "PRICING", "QUOTE", "DEMO", "TRIAL", "SUPPORT",
    "AGENT", "HUMAN", "CALLME", "WEATHER", "NEWS", "ALERTS", "SPORTS", "SCORES", "RECIPE", "TIPS", "FAQ",
    "LOCATION", "ADDRESS", "DIRECTIONS", "PARKING", "WIFI",
};

static const char *const regexes[] = {
    "\\\\b(order|track)\\\\s*#?\\\\d{4,}", "\\\\bwhere\\\\s+is\\\\s+my\\\\b", "\\\\b(refund|money back)\\\\b",
    "\\\\b\\\\d{5}(-\\\\d{4})?\\\\b", "\\\\bcall\\\\s+me\\\\b", "\\\\b(price|cost|how much)\\\\b",
    "\\\\b(open|close)s?\\\\s+(at|today)\\\\b", "^\\\\s*\\\\?", "\\\\b(angry|terrible|worst)\\\\b",
    "\\\\b(love|great|awesome)\\\\b", "\\\\bunsubscribe me\\\\b", "\\\\bwrong number\\\\b", "@\\\\w+\\\\.com",
    "https?://", "\\\\b(appointment|appt)\\\\b", "\\\\b(tomorrow|tonight)\\\\b", "\\\\bcoupon code\\\\b",
    "\\\\b(sale|discount)\\\\b", "\\\\bgift card\\\\b", "\\\\b(ship|shipping|delivery)\\\\b", "\\\\binvoice\\\\b",
    "\\\\bpassword\\\\b", "\\\\blog ?in\\\\b", "\\\\b(cancel|stop) my (order|subscription)\\\\b", "\\\\bspeak to\\\\b",
    "\\\\bmanager\\\\b", "\\\\b(hello|hi|hey)\\\\b.*\\\\?$", "\\\\bmenu\\\\b", "\\\\b(vegan|gluten)\\\\b",
    "\\\\breservation\\\\b", "\\\\btable for \\\\d+\\\\b", "\\\\bparking\\\\b", "\\\\bwifi\\\\b", "\\\\bjob\\\\b",
    "\\\\binterview\\\\b", "\\\\bresume\\\\b", "\\\\bvolunteer\\\\b", "\\\\bdonat(e|ion)\\\\b", "\\\\bticket\\\\b",
};

static const char *const corpus[] = {
    /* keyword hits */
    "JOIN", "menu please", "Hours?", "promo", "vip", "Track", "RSVP yes", "apply", "wifi", "Demo", "faq",
    "información", "Jóin",
    /* regex hits */
    "where is my package", "order #123456 status", "how much is the large one", "is the store open today",
    "I want a refund now", "can you call me back", "my zip is 94107", "wrong number sorry",
    "do you have vegan options", "table for 4 at 7", "is there parking nearby",
    /* fall through to "any" */
    "ok thanks", "See you soon!", "Yes I'll be there", "who is this", "lol", "Thank you so much for the update",
    "k", "sounds good to me", "Can't make it, maybe next week", "👍", "Merci beaucoup", "¿Dónde están?",
    "I already did that yesterday afternoon", "not interested", "Great, thanks for letting me know about it",
    "please send the details again", "this is Sam from the office", "running late, be there in 10",
    "what time does it start", "got it", "no", "maybe", "call from unknown number earlier", "hmm let me think",
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 2000000;
    size_t cap = 1 << 20, len = 0, nw = sizeof(words) / sizeof(words[0]), nr = sizeof(regexes) / sizeof(regexes[0]);
    size_t nc = sizeof(corpus) / sizeof(corpus[0]), lens[sizeof(corpus) / sizeof(corpus[0])];
    kw_result_t kws[sizeof(corpus) / sizeof(corpus[0])];
    char *doc = malloc(cap), la[64] = "?";
    routing_ruleset_t *rs = NULL;
    routing_error_t err;
    routing_decision_t d;
    routing_input_t in = {0};
    long matched_any = 0, actions = 0;
    int rules = 0;
    double t0, t;
    FILE *fp;

    len += (size_t)snprintf(doc + len, cap - len, "{\"number\":\"+15005550006\",\"rules\":[");
    /* 60 keyword rules (50 first-word, 10 whole-message), 39 regex rules, interleaved, then "any". */
    for (size_t k = 0, r = 0; rules < 99; rules++) {
        if ((rules % 5 == 4 || k >= nw + 10) && r < nr) {
            len += (size_t)snprintf(doc + len, cap - len,
                                    "{\"name\":\"rx%zu\",\"when\":{\"regex\":\"%s\",\"flags\":\"i\"},"
                                    "\"actions\":[{\"type\":\"auto-reply\",\"body\":\"Hi {{first_name|there}}, re %zu\"},"
                                    "{\"type\":\"add-tag\",\"tag\":\"rx%zu\"}]},",
                                    r, regexes[r], r, r);
            r++;
        } else if (k < nw) {
            len += (size_t)snprintf(doc + len, cap - len,
                                    "{\"name\":\"kw%zu\",\"when\":{\"keywords\":[\"%s\",\"%s%zu\"]},"
                                    "\"actions\":[{\"type\":\"auto-reply\",\"body\":\"Thanks {{first_name}}!\"}]},",
                                    k, words[k], words[k], k);
            k++;
        } else {
            len += (size_t)snprintf(doc + len, cap - len,
                                    "{\"name\":\"msg%zu\",\"when\":{\"keywords\":[\"what about %s\"],\"match\":\"message\"},"
                                    "\"actions\":[{\"type\":\"create-lead\"}]},",
                                    k, words[k - nw]);
            k++;
        }
    }
    len += (size_t)snprintf(doc + len, cap - len,
                            "{\"name\":\"rest\",\"when\":{\"any\":true},\"actions\":[{\"type\":\"create-lead\"},"
                            "{\"type\":\"forward-sms\",\"to\":\"+14155550100\",\"prefix\":\"[{{phone}}] \"}]}]}");
    if (rules_compile(doc, len, &rs, &err) != 0) {
        fprintf(stderr, "bench_rules: %s\n", err.text);
        return 1;
    }
    for (size_t i = 0; i < nc; i++) {
        lens[i] = strlen(corpus[i]);
        keywords_classify(corpus[i], lens[i], &kws[i]);
    }
    routing_decision_init(&d);
    in.from = "+14155550123";
    in.to = "+15005550006";
    in.attrs = (const routing_attr_t[]){{"first_name", "Ana"}};
    in.n_attrs = 1;

    for (size_t i = 0; i < nc; i++) { /* warm up and count the mix */
        in.body = corpus[i];
        in.body_len = lens[i];
        if (routing_evaluate(rs, &in, &d) != 0)
            return 1;
        matched_any += d.n_matched == 1 && d.matched[0].index == 99;
    }
    printf("rules: %zu (%d keyword, %zu regex, 1 any); corpus: %zu bodies, %ld fall through to \"any\"\n",
           rules_count(rs), 99 - (int)nr, nr, nc, matched_any);
    for (int pass = 0; pass < 2; pass++) {
        actions = 0;
        t0 = now_s();
        for (long i = 0; i < n; i++) {
            size_t k = (size_t)i % nc;
            in.body = corpus[k];
            in.body_len = lens[k];
            in.carrier = pass == 0 ? &kws[k] : NULL;
            if (routing_evaluate(rs, &in, &d) != 0)
                return 1;
            actions += (long)d.n_actions;
        }
        t = now_s() - t0;
        if ((fp = fopen("/proc/loadavg", "r")) != NULL) {
            if (!fgets(la, sizeof(la), fp))
                snprintf(la, sizeof(la), "?");
            la[strcspn(la, "\n")] = '\0';
            fclose(fp);
        }
        printf("%-34s %ld messages in %.3f s: %.0f messages/s (%.0f ns/message, %ld actions) [loadavg %s]\n",
               pass == 0 ? "rules (carrier result supplied):" : "rules + keywords_classify():", n, t,
               (double)n / t, t * 1e9 / (double)n, actions, la);
    }
    routing_decision_close(&d);
    rules_unref(rs);
    free(doc);
    return 0;
}
