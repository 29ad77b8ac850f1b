/*
 * JSON views of decisions: the detail the applier records in conversation_events for
 * each action, and the whole decision for `herald rules test --json` and logs. The
 * webhook writes the detail as text with routing_action_write_json() (the same members
 * without a jansson tree). Secrets (trigger-automation "secret") never appear.
 */
#include "routing/routing_int.h"

#include "common/jsonw.h"

#include <string.h>

static const char *source_name(routing_source_t s)
{
    switch (s) {
    case ROUTING_SRC_CARRIER: return "carrier";
    case ROUTING_SRC_FORM: return "form";
    default: return "rule";
    }
}

static void set_str(json_t *o, const char *key, const char *v)
{
    if (v)
        json_object_set_new(o, key, json_string(v));
}

static void set_strn(json_t *o, const char *key, const char *v, size_t n)
{
    if (v)
        json_object_set_new(o, key, json_stringn(v, n));
}

json_t *routing_action_to_json(const routing_out_action_t *a)
{
    json_t *o = json_object();
    const routing_action_t *sp = a->spec;

    set_str(o, "type", routing_action_name(a->type));
    set_str(o, "source", source_name(a->source));
    if (a->rule_name) {
        set_str(o, "rule", a->rule_name);
        json_object_set_new(o, "rule_index", json_integer(a->rule_index));
        json_object_set_new(o, "action_index", json_integer(a->action_index));
    }
    if (a->source == ROUTING_SRC_CARRIER)
        set_str(o, "keyword", a->keyword);
    if (a->text) {
        set_strn(o, "text", a->text, a->text_len);
        set_str(o, "mode", a->mode == ROUTING_REPLY_QUEUED ? "queued" : "twiml");
    }
    set_str(o, "field", a->field);
    set_strn(o, "value", a->value, a->value_len);
    if (a->noop)
        json_object_set_new(o, "noop", json_true());
    if (!sp || a->source != ROUTING_SRC_RULE)
        return o;
    switch (sp->type) {
    case ROUTING_ACT_GO_TO_FLOW:
        set_str(o, "flow", sp->u.flow.flow);
        set_str(o, "endpoint", sp->u.flow.endpoint);
        break;
    case ROUTING_ACT_FILL_FORM:
        set_str(o, "form", sp->u.form.form);
        json_object_set_new(o, "fields", json_integer((json_int_t)sp->u.form.n_fields));
        break;
    case ROUTING_ACT_FORWARD_SMS:
        set_str(o, "to", sp->u.forward.to);
        break;
    case ROUTING_ACT_AI_ASSISTANT:
        set_str(o, "endpoint", sp->u.ai.endpoint);
        json_object_set_new(o, "timeout_ms", json_integer(sp->u.ai.timeout_ms));
        set_str(o, "prompt", sp->u.ai.prompt);
        break;
    case ROUTING_ACT_TRIGGER_AUTOMATION:
        set_str(o, "url", sp->u.automation.url);
        set_str(o, "event", sp->u.automation.event);
        json_object_set_new(o, "signed", json_boolean(sp->u.automation.secret != NULL));
        break;
    case ROUTING_ACT_CREATE_LEAD:
        set_str(o, "lead_source", sp->u.lead.source);
        break;
    case ROUTING_ACT_ADD_TAG:
    case ROUTING_ACT_REMOVE_TAG:
        set_str(o, "tag", sp->u.tag.tag);
        break;
    default:
        break;
    }
    return o;
}

/* ---- the same detail written as text (routing_action_write_json) ---- */

static void w_true(jsonw_obj_t *w, const char *key, int v)
{
    jsonw_key(w, key);
    w->rc |= v ? buf_append(w->b, "true", 4) : buf_append(w->b, "false", 5);
}

int routing_action_write_json(buf_t *b, const routing_out_action_t *a)
{
    jsonw_obj_t w = {b, 1, 0};
    const routing_action_t *sp = a->spec;

    jsonw_member_str(&w, "type", routing_action_name(a->type));
    jsonw_member_str(&w, "source", source_name(a->source));
    if (a->rule_name) {
        jsonw_member_str(&w, "rule", a->rule_name);
        jsonw_member_int(&w, "rule_index", a->rule_index);
        jsonw_member_int(&w, "action_index", a->action_index);
    }
    if (a->source == ROUTING_SRC_CARRIER)
        jsonw_member_str(&w, "keyword", a->keyword);
    if (a->text) {
        jsonw_member_strn(&w, "text", a->text, a->text_len);
        jsonw_member_str(&w, "mode", a->mode == ROUTING_REPLY_QUEUED ? "queued" : "twiml");
    }
    jsonw_member_str(&w, "field", a->field);
    jsonw_member_strn(&w, "value", a->value, a->value_len);
    if (a->noop)
        w_true(&w, "noop", 1);
    if (!sp || a->source != ROUTING_SRC_RULE)
        return w.rc ? BUF_ETOOBIG : 0;
    switch (sp->type) {
    case ROUTING_ACT_GO_TO_FLOW:
        jsonw_member_str(&w, "flow", sp->u.flow.flow);
        jsonw_member_str(&w, "endpoint", sp->u.flow.endpoint);
        break;
    case ROUTING_ACT_FILL_FORM:
        jsonw_member_str(&w, "form", sp->u.form.form);
        jsonw_member_int(&w, "fields", (long long)sp->u.form.n_fields);
        break;
    case ROUTING_ACT_FORWARD_SMS:
        jsonw_member_str(&w, "to", sp->u.forward.to);
        break;
    case ROUTING_ACT_AI_ASSISTANT:
        jsonw_member_str(&w, "endpoint", sp->u.ai.endpoint);
        jsonw_member_int(&w, "timeout_ms", sp->u.ai.timeout_ms);
        jsonw_member_str(&w, "prompt", sp->u.ai.prompt);
        break;
    case ROUTING_ACT_TRIGGER_AUTOMATION:
        jsonw_member_str(&w, "url", sp->u.automation.url);
        jsonw_member_str(&w, "event", sp->u.automation.event);
        w_true(&w, "signed", sp->u.automation.secret != NULL);
        break;
    case ROUTING_ACT_CREATE_LEAD:
        jsonw_member_str(&w, "lead_source", sp->u.lead.source);
        break;
    case ROUTING_ACT_ADD_TAG:
    case ROUTING_ACT_REMOVE_TAG:
        jsonw_member_str(&w, "tag", sp->u.tag.tag);
        break;
    default:
        break;
    }
    return w.rc ? BUF_ETOOBIG : 0;
}

json_t *routing_decision_to_json(const routing_decision_t *d)
{
    static const struct {
        unsigned bit;
        const char *name;
    } flag_names[] = {
        {ROUTING_F_LIMIT_HIT, "limit_hit"}, {ROUTING_F_BUDGET, "budget"},       {ROUTING_F_INVALID_UTF8, "invalid_utf8"},
        {ROUTING_F_BODY_CUT, "body_cut"},   {ROUTING_F_TRUNCATED, "truncated"}, {ROUTING_F_CARRIER, "carrier"},
        {ROUTING_F_FORM, "form"},           {ROUTING_F_NO_RULES, "no_rules"},
    };
    json_t *o = json_object(), *flags = json_array(), *m = json_array(), *acts = json_array(), *form;

    for (size_t i = 0; i < sizeof(flag_names) / sizeof(flag_names[0]); i++)
        if (d->flags & flag_names[i].bit)
            json_array_append_new(flags, json_string(flag_names[i].name));
    json_object_set_new(o, "flags", flags);
    if (d->carrier.cls != KW_NONE || d->carrier.revocation) {
        json_t *c = json_object();
        set_str(c, "class", keywords_class_name(d->carrier.cls));
        json_object_set_new(c, "revocation", json_boolean(d->carrier.revocation));
        set_str(c, "keyword", d->carrier.keyword);
        set_str(c, "rule", d->carrier.rule);
        json_object_set_new(o, "carrier", c);
    }
    for (size_t i = 0; i < d->n_matched; i++) {
        json_t *r = json_object();
        json_object_set_new(r, "index", json_integer(d->matched[i].index));
        set_str(r, "name", d->matched[i].name);
        json_array_append_new(m, r);
    }
    json_object_set_new(o, "matched", m);
    for (size_t i = 0; i < d->n_actions; i++)
        json_array_append_new(acts, routing_action_to_json(&d->actions[i]));
    json_object_set_new(o, "actions", acts);
    form = json_object();
    switch (d->form.op) {
    case ROUTING_FORM_SET:
        set_str(form, "op", "set");
        set_str(form, "form", d->form.form);
        json_object_set_new(form, "step", json_integer(d->form.step));
        break;
    case ROUTING_FORM_CLEAR:
        set_str(form, "op", "clear");
        break;
    default:
        set_str(form, "op", "keep");
        break;
    }
    json_object_set_new(o, "form", form);
    if (d->n_limit_rules) {
        json_t *l = json_array();
        for (size_t i = 0; i < d->n_limit_rules; i++)
            json_array_append_new(l, json_integer(d->limit_rules[i]));
        json_object_set_new(o, "limit_rules", l);
    }
    return o;
}
