/*
 * libFuzzer driver for routing/: any byte string is compiled as a rule-set document; when
 * it compiles, a few bodies derived from the input (and the input's tail as a body, with
 * and without a form in progress) are evaluated. Checks: no crash, no leak, error text
 * always set on failure, decisions within their caps and texts NUL-terminated.
 */
#include "routing/routing.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static routing_decision_t d;
static int ready;

static void check(const routing_decision_t *dec)
{
    if (dec->n_actions > ROUTING_MAX_OUT_ACTIONS || dec->n_matched > ROUTING_MAX_MATCHED)
        abort();
    for (size_t i = 0; i < dec->n_actions; i++)
        if (dec->actions[i].text && strlen(dec->actions[i].text) != dec->actions[i].text_len)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const bodies[] = {"JOIN", "Jóin now", "price?", "STOP", "help", "aaaaaaaaaaaaaaaaaaaaaaaaaaaa!",
                                         "\xff\xfe", "", "what are your hours"};
    char *copy = malloc(size ? size : 1);
    routing_ruleset_t *rs = NULL;
    routing_error_t err;
    routing_input_t in = {0};

    if (!copy)
        return 0;
    if (!ready) {
        routing_decision_init(&d);
        ready = 1;
    }
    if (size)
        memcpy(copy, data, size);
    if (rules_compile(copy, size, &rs, &err) != 0) {
        if (rs || err.text[0] == '\0')
            abort();
        free(copy);
        return 0;
    }
    in.from = "+14155550123";
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        in.body = bodies[i];
        in.body_len = strlen(bodies[i]);
        if (routing_evaluate(rs, &in, &d) != 0)
            abort();
        check(&d);
    }
    in.body = copy + size / 2;
    in.body_len = size - size / 2;
    for (size_t r = 0; r < rules_count(rs); r++) {
        size_t n;
        const routing_action_t *a = rules_actions(rs, r, &n);
        for (size_t j = 0; j < n; j++)
            if (a[j].type == ROUTING_ACT_FILL_FORM) {
                in.form = a[j].u.form.form;
                in.form_step = (int)(size % (a[j].u.form.n_fields + 1));
            }
    }
    if (routing_evaluate(rs, &in, &d) != 0)
        abort();
    check(&d);
    json_decref(routing_decision_to_json(&d));
    rules_unref(rs);
    free(copy);
    return 0;
}
