/*
 * herald rules load|list|test: validate and store routing-rule documents, list the
 * stored versions, and dry-run the active set of a number against a message body. The
 * dry run reads the contact, the conversation's form state and the org's texts when
 * --from is given, and writes nothing.
 */
#include "app/cli.h"
#include "app/commands.h"
#include "app/org_creds.h"
#include "common/xalloc.h"
#include "routing/routing.h"
#include "routing/rules_store.h"
#include "routing/secrets.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USAGE                                                                                        \
    "usage: herald rules load FILE.json [--org ID]\n"                                                \
    "       herald rules list [--number E164] [--json] [--org ID]\n"                                 \
    "       herald rules test --number E164 --body TEXT [--from E164] [--json] [--org ID]\n"    \
    "       herald rules seal\n"

typedef struct opts {
    const char *file, *org, *number, *body, *from;
    int json;
} opts_t;

static int usage(const char *why)
{
    if (why)
        fprintf(stderr, "herald: rules: %s\n", why);
    fputs(USAGE, stderr);
    return 2;
}

static int parse(int argc, char **argv, int first, opts_t *o, const char **bad)
{
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;

        if (strcmp(a, "--json") == 0) {
            o->json = 1;
            continue;
        }
        if (strcmp(a, "--org") == 0)
            slot = &o->org;
        else if (strcmp(a, "--number") == 0)
            slot = &o->number;
        else if (strcmp(a, "--body") == 0)
            slot = &o->body;
        else if (strcmp(a, "--from") == 0)
            slot = &o->from;
        if (slot) {
            if (i + 1 >= argc) {
                *bad = a;
                return -1;
            }
            *slot = argv[++i];
        } else if (a[0] == '-' && a[1] == '-') {
            *bad = a;
            return -1;
        } else if (!o->file) {
            o->file = a;
        } else {
            *bad = a;
            return -1;
        }
    }
    return 0;
}

/* Reads at most ROUTING_MAX_DOC + 1 bytes (enough for rules_compile to refuse a bigger file). */
static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf;

    if (!fp)
        return NULL;
    buf = xmalloc(ROUTING_MAX_DOC + 2);
    *len = fread(buf, 1, ROUTING_MAX_DOC + 1, fp);
    if (ferror(fp)) {
        free(buf);
        fclose(fp);
        return NULL;
    }
    buf[*len] = '\0';
    fclose(fp);
    return buf;
}

typedef struct wait {
    int done, version;
    char err[256];
} wait_t;

static void on_saved(int version, const char *err, void *arg)
{
    wait_t *w = arg;
    w->version = version;
    if (err)
        snprintf(w->err, sizeof(w->err), "%s", err);
    w->done = 1;
}

/*
 * HERALD_MASTER_KEY for the secrets of rule sets: 1 and the key, 0 when unset, -1 (after
 * a one-line message) when malformed.
 */
static int master_key(unsigned char key[CRYPTO_KEY_LEN])
{
    int mk = org_creds_master_key(key);
    if (mk < 0)
        fprintf(stderr, "herald: HERALD_MASTER_KEY: expected 32 bytes as 64 hex digits or base64\n");
    return mk;
}

/* Replaces *doc by its sealed version when it holds a secret; -1 after a message. */
static int seal_document(const char *what, char **doc)
{
    unsigned char key[CRYPTO_KEY_LEN];
    char err[256], *sealed;
    int mk = master_key(key), n, rc;

    if (mk < 0)
        return -1;
    rc = rules_secrets_seal(*doc, mk ? key : NULL, &sealed, &n, err, sizeof(err));
    memset(key, 0, sizeof(key));
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", what, err);
        return -1;
    }
    if (sealed) {
        free(*doc);
        *doc = sealed;
    }
    return 0;
}

static int cmd_load(const opts_t *o)
{
    routing_ruleset_t *rs = NULL;
    routing_error_t err;
    cli_session_t s;
    wait_t w = {0};
    size_t len;
    char *doc;
    int rc = 1;

    if (!o->file)
        return usage("load needs FILE.json");
    if (o->number || o->body || o->from || o->json)
        return usage("load takes only FILE.json and --org");
    doc = slurp(o->file, &len);
    if (!doc) {
        fprintf(stderr, "herald: %s: cannot read\n", o->file);
        return 1;
    }
    /* Validate before touching the database: a bad file changes nothing. */
    if (memchr(doc, '\0', len) || rules_compile(doc, len, &rs, &err) != 0) {
        fprintf(stderr, "%s: %s\n", o->file, memchr(doc, '\0', len) ? "NUL byte in the document" : err.text);
        free(doc);
        return 1;
    }
    /* trigger-automation secrets are stored sealed under HERALD_MASTER_KEY, never in clear. */
    if (seal_document(o->file, &doc) != 0)
        goto out;
    if (cli_session_open(&s) != 0)
        goto out;
    if (cli_session_org(&s, o->org) != 0)
        goto close;
    if (rules_store_save(s.db, s.org_id, rules_number(rs), doc, on_saved, &w) != 0) {
        fprintf(stderr, "herald: rules: database connection closed\n");
        goto close;
    }
    while (!w.done)
        uv_run(&s.loop, UV_RUN_ONCE);
    if (w.err[0]) {
        fprintf(stderr, "herald: rules: %s\n", w.err);
        goto close;
    }
    printf("loaded %s version %d (%zu rules)\n", rules_number(rs), w.version, rules_count(rs));
    rc = 0;
close:
    cli_session_close(&s);
out:
    rules_unref(rs);
    free(doc);
    return rc;
}

static int cmd_list(cli_session_t *s, const opts_t *o)
{
    char org[24];
    const char *p[2] = {org, o->number}, *err;
    PGresult *r;

    snprintf(org, sizeof(org), "%" PRId64, s->org_id);
    if (cli_exec(s,
                 "SELECT number, version, active, jsonb_array_length(document->'rules'), "
                 "to_char(loaded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                 "FROM rule_sets WHERE org_id = $1::bigint AND ($2::text IS NULL OR number = $2) "
                 "ORDER BY number, version",
                 2, p, &r, &err) != 0) {
        fprintf(stderr, "herald: rules: %s\n", err);
        return 1;
    }
    if (o->json) {
        json_t *data = json_array(), *top;
        char *txt;
        for (int i = 0; i < PQntuples(r); i++)
            json_array_append_new(data, json_pack("{s:s, s:i, s:b, s:i, s:s}", "number", PQgetvalue(r, i, 0),
                                                  "version", atoi(PQgetvalue(r, i, 1)), "active",
                                                  PQgetvalue(r, i, 2)[0] == 't', "rules", atoi(PQgetvalue(r, i, 3)),
                                                  "loaded_at", PQgetvalue(r, i, 4)));
        top = json_pack("{s:o}", "data", data);
        txt = json_dumps(top, JSON_COMPACT);
        puts(txt);
        free(txt);
        json_decref(top);
    } else {
        printf("%-16s %7s %-6s %5s  %s\n", "NUMBER", "VERSION", "ACTIVE", "RULES", "LOADED_AT");
        for (int i = 0; i < PQntuples(r); i++)
            printf("%-16s %7s %-6s %5s  %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                   PQgetvalue(r, i, 2)[0] == 't' ? "yes" : "no", PQgetvalue(r, i, 3), PQgetvalue(r, i, 4));
    }
    PQclear(r);
    return 0;
}

typedef struct active {
    int done, found, version;
    char *doc;
    char err[256];
} active_t;

static void on_row(int64_t org_id, const char *number, int version, const char *document, void *arg)
{
    active_t *a = arg;
    (void)org_id;
    (void)number;
    a->found = 1;
    a->version = version;
    a->doc = xstrdup(document);
}

static void on_done(const char *err, void *arg)
{
    active_t *a = arg;
    if (err)
        snprintf(a->err, sizeof(a->err), "%s", err);
    a->done = 1;
}

/* What the test input needs from the database: the contact, its form state, the org's texts. */
typedef struct context {
    PGresult *contact, *conv, *org;
    json_t *tags, *attrs;
    const char **tag_v;
    routing_attr_t *attr_v;
    char **attr_text;
    size_t n_attr_text;
    char form[128];
} context_t;

static void context_free(context_t *c)
{
    for (size_t i = 0; i < c->n_attr_text; i++)
        free(c->attr_text[i]);
    free(c->attr_text);
    free(c->tag_v);
    free(c->attr_v);
    json_decref(c->tags);
    json_decref(c->attrs);
    if (c->contact)
        PQclear(c->contact);
    if (c->conv)
        PQclear(c->conv);
    if (c->org)
        PQclear(c->org);
}

/* Column col of r's first row, or NULL for SQL NULL or no row (an empty text is the engine's to read). */
static const char *first_value(PGresult *r, int col)
{
    if (!r || PQntuples(r) < 1 || PQgetisnull(r, 0, col))
        return NULL;
    return PQgetvalue(r, 0, col);
}

static int load_context(cli_session_t *s, const opts_t *o, context_t *c, routing_input_t *in)
{
    char org[24];
    const char *p1[1] = {org}, *p2[2] = {org, o->from}, *p3[3] = {org, o->number, o->from}, *err;

    snprintf(org, sizeof(org), "%" PRId64, s->org_id);
    if (cli_exec(s, "SELECT help_text, opt_out_text, opt_in_text FROM orgs WHERE id = $1::bigint", 1, p1, &c->org,
                 &err) != 0)
        goto fail;
    in->help_text = first_value(c->org, 0);
    in->opt_out_text = first_value(c->org, 1);
    in->opt_in_text = first_value(c->org, 2);
    if (!o->from)
        return 0;
    if (cli_exec(s, "SELECT array_to_json(tags)::text, attributes::text FROM contacts "
                    "WHERE org_id = $1::bigint AND e164 = $2",
                 2, p2, &c->contact, &err) != 0 ||
        cli_exec(s, "SELECT form_state->>'form', form_state->>'step' FROM conversations "
                    "WHERE org_id = $1::bigint AND our_number = $2 AND contact_e164 = $3 AND form_state IS NOT NULL",
                 3, p3, &c->conv, &err) != 0)
        goto fail;
    if (PQntuples(c->contact) == 1) {
        size_t i, n;
        const char *key;
        json_t *v;

        c->tags = json_loads(PQgetvalue(c->contact, 0, 0), 0, NULL);
        c->attrs = json_loads(PQgetvalue(c->contact, 0, 1), 0, NULL);
        n = json_array_size(c->tags);
        c->tag_v = xcalloc(n + 1, sizeof(*c->tag_v));
        for (i = 0; i < n; i++)
            if (json_is_string(json_array_get(c->tags, i)))
                c->tag_v[in->n_tags++] = json_string_value(json_array_get(c->tags, i));
        in->tags = c->tag_v;
        n = json_object_size(c->attrs);
        c->attr_v = xcalloc(n + 1, sizeof(*c->attr_v));
        c->attr_text = xcalloc(n + 1, sizeof(*c->attr_text));
        json_object_foreach(c->attrs, key, v) {
            const char *val;
            if (json_is_string(v)) {
                val = json_string_value(v);
            } else {
                c->attr_text[c->n_attr_text] = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
                val = c->attr_text[c->n_attr_text++];
            }
            c->attr_v[in->n_attrs++] = (routing_attr_t){key, val};
        }
        in->attrs = c->attr_v;
    }
    if (PQntuples(c->conv) == 1 && !PQgetisnull(c->conv, 0, 0)) {
        snprintf(c->form, sizeof(c->form), "%s", PQgetvalue(c->conv, 0, 0));
        in->form = c->form;
        in->form_step = atoi(PQgetvalue(c->conv, 0, 1));
    }
    return 0;
fail:
    fprintf(stderr, "herald: rules: %s\n", err);
    return -1;
}

static void print_action(const routing_out_action_t *a)
{
    const routing_action_t *sp = a->spec;

    printf("  %s", routing_action_name(a->type));
    if (a->source == ROUTING_SRC_CARRIER)
        printf(" (carrier keyword%s%s)", a->keyword && *a->keyword ? " " : "", a->keyword ? a->keyword : "");
    if (a->field)
        printf(" [%s]", a->field);
    if (a->value)
        printf(" store %s=\"%s\"", a->field, a->value);
    if (sp && a->source == ROUTING_SRC_RULE) {
        switch (sp->type) {
        case ROUTING_ACT_GO_TO_FLOW:
            printf(": start flow \"%s\"%s%s", sp->u.flow.flow, sp->u.flow.endpoint ? " at " : "",
                   sp->u.flow.endpoint ? sp->u.flow.endpoint : "");
            break;
        case ROUTING_ACT_FILL_FORM:
            printf(": start form \"%s\" (%zu fields)", sp->u.form.form, sp->u.form.n_fields);
            break;
        case ROUTING_ACT_FORWARD_SMS:
            printf(": queue a copy to %s", sp->u.forward.to);
            break;
        case ROUTING_ACT_AI_ASSISTANT:
            printf(": hand the conversation to %s (timeout %u ms)", sp->u.ai.endpoint, sp->u.ai.timeout_ms);
            break;
        case ROUTING_ACT_TRIGGER_AUTOMATION:
            printf(": POST event \"%s\" to %s%s", sp->u.automation.event, sp->u.automation.url,
                   sp->u.automation.secret ? " (signed)" : "");
            break;
        case ROUTING_ACT_CREATE_LEAD:
            printf(": open a lead%s%s", sp->u.lead.source ? " from " : "", sp->u.lead.source ? sp->u.lead.source : "");
            break;
        case ROUTING_ACT_ADD_TAG:
        case ROUTING_ACT_REMOVE_TAG:
            printf(": %s", sp->u.tag.tag);
            break;
        default:
            break;
        }
    }
    if (a->noop)
        printf(" (no change)");
    if (a->text)
        printf("%s %s \"%s\"", a->type == ROUTING_ACT_FORWARD_SMS ? "," : ":",
               a->mode == ROUTING_REPLY_QUEUED ? "queued" : "reply", a->text);
    putchar('\n');
}

static int cmd_test(cli_session_t *s, const opts_t *o)
{
    routing_ruleset_t *rs = NULL;
    routing_error_t rerr;
    routing_decision_t d;
    routing_input_t in = {0};
    active_t a = {0};
    context_t c = {0};
    int rc = 1;

    if (rules_store_each_active(s->db, s->org_id, o->number, on_row, on_done, &a) != 0) {
        fprintf(stderr, "herald: rules: database connection closed\n");
        return 1;
    }
    while (!a.done)
        uv_run(&s->loop, UV_RUN_ONCE);
    if (a.err[0]) {
        fprintf(stderr, "herald: rules: %s\n", a.err);
        goto out;
    }
    if (!a.found) {
        fprintf(stderr, "herald: rules: no active rules for %s\n", o->number);
        goto out;
    }
    {
        /* The dry run signs nothing: without the key, each sealed secret is a stand-in. */
        unsigned char key[CRYPTO_KEY_LEN];
        char err[256], *opened;
        int mk = master_key(key);
        if (mk < 0)
            goto out;
        int orc = rules_secrets_open(a.doc, mk ? key : NULL, 1, &opened, err, sizeof(err));
        memset(key, 0, sizeof(key));
        if (orc != 0) {
            fprintf(stderr, "herald: rules: stored version %d: %s\n", a.version, err);
            goto out;
        }
        if (opened) {
            free(a.doc);
            a.doc = opened;
        }
    }
    if (rules_compile(a.doc, strlen(a.doc), &rs, &rerr) != 0) {
        fprintf(stderr, "herald: rules: stored version %d no longer compiles: %s\n", a.version, rerr.text);
        goto out;
    }
    rules_set_version(rs, a.version);
    in.body = o->body;
    in.body_len = strlen(o->body);
    in.from = o->from;
    in.to = o->number;
    if (load_context(s, o, &c, &in) != 0)
        goto out;
    routing_decision_init(&d);
    if (routing_evaluate(rs, &in, &d) != 0) {
        fprintf(stderr, "herald: rules: evaluation failed\n");
        routing_decision_close(&d);
        goto out;
    }
    if (o->json) {
        json_t *j = routing_decision_to_json(&d);
        char *txt;
        json_object_set_new(j, "number", json_string(o->number));
        json_object_set_new(j, "version", json_integer(a.version));
        txt = json_dumps(j, JSON_COMPACT);
        puts(txt);
        free(txt);
        json_decref(j);
    } else {
        printf("rules for %s, version %d (%zu rules)\n", o->number, a.version, rules_count(rs));
        if (in.form)
            printf("form in progress: %s, step %d\n", in.form, in.form_step);
        if (d.flags & ROUTING_F_CARRIER)
            printf("carrier keyword: %s (%s)\n", keywords_class_name(d.carrier.cls),
                   d.carrier.keyword[0] ? d.carrier.keyword : d.carrier.rule);
        else if (d.flags & ROUTING_F_FORM)
            printf("answer to form \"%s\"\n", in.form);
        else if (d.n_matched == 0)
            printf("no rule matched\n");
        for (size_t i = 0; i < d.n_matched; i++)
            printf("matched rule %d \"%s\"\n", d.matched[i].index, d.matched[i].name);
        for (size_t i = 0; i < d.n_actions; i++)
            print_action(&d.actions[i]);
        if (d.form.op == ROUTING_FORM_SET)
            printf("form state: %s, step %d\n", d.form.form, d.form.step);
        else if (d.form.op == ROUTING_FORM_CLEAR)
            printf("form state: cleared\n");
        if (d.flags & ROUTING_F_LIMIT_HIT)
            printf("warning: %zu regex rule(s) hit the match limit (counted as no match)\n", d.n_limit_rules);
        if (d.flags & ROUTING_F_INVALID_UTF8)
            printf("warning: the body is not valid UTF-8\n");
    }
    routing_decision_close(&d);
    rc = 0;
out:
    context_free(&c);
    rules_unref(rs);
    if (a.doc)
        memset(a.doc, 0, strlen(a.doc)); /* may hold opened secrets */
    free(a.doc);
    return rc;
}

/*
 * herald rules seal: every stored rule set (every org, every version) that still holds a
 * trigger-automation secret in clear, as documents loaded before sealing existed do, is
 * rewritten with the secret sealed. Running it again changes nothing.
 */
static int cmd_seal(cli_session_t *s)
{
    static const char pick[] =
        "SELECT id, document::text FROM rule_sets WHERE jsonb_path_exists(document, "
        "'$.rules[*].actions[*] ? (@.type == \"trigger-automation\" && exists(@.secret))') ORDER BY id";
    unsigned char key[CRYPTO_KEY_LEN];
    int mk = master_key(key), sets = 0, secrets = 0, rc = 0;
    const char *err;
    PGresult *r;

    if (mk < 0)
        return 1;
    if (cli_exec(s, pick, 0, NULL, &r, &err) != 0) {
        fprintf(stderr, "herald: rules: %s\n", err);
        return 1;
    }
    for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
        char why[256], *sealed;
        const char *p[2];
        PGresult *u;
        int n;
        if (rules_secrets_seal(PQgetvalue(r, i, 1), mk ? key : NULL, &sealed, &n, why, sizeof(why)) != 0) {
            fprintf(stderr, "herald: rules: rule set %s: %s\n", PQgetvalue(r, i, 0), why);
            rc = 1;
            break;
        }
        if (!sealed)
            continue;
        p[0] = PQgetvalue(r, i, 0);
        p[1] = sealed;
        if (cli_exec(s, "UPDATE rule_sets SET document = $2::jsonb WHERE id = $1::bigint", 2, p, &u, &err) != 0) {
            fprintf(stderr, "herald: rules: rule set %s: %s\n", p[0], err);
            rc = 1;
        } else {
            PQclear(u);
            sets++;
            secrets += n;
        }
        free(sealed);
    }
    PQclear(r);
    memset(key, 0, sizeof(key));
    printf("sealed %d secret(s) in %d rule set(s)\n", secrets, sets);
    return rc;
}

int cmd_rules(int argc, char **argv)
{
    opts_t o = {0};
    const char *bad = NULL, *sub;
    cli_session_t s;
    int rc;

    if (argc < 2)
        return usage(NULL);
    sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (parse(argc, argv, 2, &o, &bad) != 0) {
        char why[128];
        snprintf(why, sizeof(why), "unexpected or incomplete argument '%.80s'", bad);
        return usage(why);
    }
    if (strcmp(sub, "load") == 0)
        return cmd_load(&o);
    if (strcmp(sub, "seal") == 0) {
        if (o.file || o.number || o.body || o.from || o.json || o.org)
            return usage("seal takes no arguments (it seals the rule sets of every org)");
        if (cli_session_open(&s) != 0)
            return 1;
        rc = cmd_seal(&s);
        cli_session_close(&s);
        return rc;
    }
    if (strcmp(sub, "list") == 0) {
        if (o.file || o.body || o.from)
            return usage("list takes only --number, --json and --org");
    } else if (strcmp(sub, "test") == 0) {
        if (o.file || !o.number || !o.body)
            return usage("test needs --number E164 and --body TEXT");
    } else {
        char why[128];
        snprintf(why, sizeof(why), "unknown subcommand '%.60s'", sub);
        return usage(why);
    }
    if (cli_session_open(&s) != 0)
        return 1;
    if (cli_session_org(&s, o.org) != 0) {
        cli_session_close(&s);
        return 1;
    }
    rc = strcmp(sub, "list") == 0 ? cmd_list(&s, &o) : cmd_test(&s, &o);
    cli_session_close(&s);
    return rc;
}
