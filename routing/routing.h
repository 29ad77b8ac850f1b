/*
 * Routing rules for inbound SMS: compile a rule-set document once, evaluate each message
 * against it as a pure function, and keep the live sets per (org, number) in a registry
 * that a reload swaps atomically.
 *
 * Document (JSON, see docs in /work/shared/design.md "Routing rules"):
 *   {"number": "+15005550006",
 *    "rules": [{"name": "join", "when": {"keywords": ["JOIN"], "match": "first-word"},
 *               "continue": false, "actions": [{"type": "auto-reply", "body": "Hi {{first_name|there}}"}]}]}
 * "when" is one of {"keywords": [...], "match": "first-word"|"message"},
 * {"regex": "...", "flags": "imsxu"} or {"any": true}.
 *
 * Evaluation order (routing_evaluate):
 *   1. carrier keywords (STOP family and free-text revocations, START family, HELP) with
 *      the org's texts; nothing else runs, and an opt-out ends any form in progress;
 *   2. a fill-form in progress takes the message as the answer to its current field;
 *   3. the rules in order: the first match runs its actions and stops unless "continue".
 *
 * Ownership: a routing_ruleset_t is immutable after rules_compile() and refcounted
 * (rules_ref/rules_unref, atomic, any thread). A routing_decision_t borrows strings from
 * the ruleset it was evaluated against: hold a reference while reading it.
 *
 * Threading model: rules_compile() and routing_evaluate() touch no shared state (the
 * folding table is built once under pthread_once), so any thread may run them; each
 * thread uses its own routing_decision_t (it carries the PCRE2 match data and JIT stack).
 * The registry is guarded by a mutex held only to copy or replace a pointer: the webhook
 * path calls routing_registry_acquire() (a new reference), evaluates and applies, then
 * rules_unref(); a reload compiles the new set off to the side and publishes it with
 * routing_registry_swap(). A message in flight keeps the set it started with; the old
 * set is freed when its last reference goes.
 */
#ifndef HERALD_ROUTING_ROUTING_H
#define HERALD_ROUTING_ROUTING_H
#include "common/buf.h"
#include "compliance/keywords.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define ROUTING_MUSTCHECK __attribute__((warn_unused_result))

/* Error codes (negative). */
#define ROUTING_ESYNTAX (-1)  /* not JSON */
#define ROUTING_EINVALID (-2) /* JSON, but not a valid rule set */
#define ROUTING_ETOOBIG (-3)  /* over one of the caps below */
#define ROUTING_EARG (-4)     /* bad argument (NULL, uninitialised decision) */

/* Caps on documents (peer-controlled sizes are refused with a clear error). */
#define ROUTING_MAX_DOC (1024 * 1024)  /* bytes of JSON */
#define ROUTING_MAX_RULES 1000
#define ROUTING_MAX_ACTIONS 16         /* per rule */
#define ROUTING_MAX_KEYWORDS 100       /* per rule */
#define ROUTING_MAX_KEYWORD_BYTES 64
#define ROUTING_MAX_PATTERN 1024       /* bytes of regex source */
#define ROUTING_MAX_FIELDS 20          /* per fill-form */
#define ROUTING_MAX_NAME 100           /* rule, form, field, flow, tag, event names */
#define ROUTING_MAX_TEXT 1600          /* characters of a reply/prompt template */
#define ROUTING_MAX_URL 2048

/* Evaluation limits. */
#define ROUTING_MAX_BODY 8192          /* body bytes looked at; the rest is ignored (flagged) */
#define ROUTING_MATCH_LIMIT 100000     /* PCRE2 match limit per regex and message */
#define ROUTING_DEPTH_LIMIT 1000       /* PCRE2 depth limit (interpreter fallback) */
#define ROUTING_JIT_STACK_MAX (256 * 1024)
#define ROUTING_MAX_LIMIT_HITS 4       /* after this many limit hits, skip further regex rules */
#define ROUTING_MAX_MATCHED 32         /* matched rules recorded per decision */
#define ROUTING_MAX_OUT_ACTIONS 64     /* actions per decision */
#define ROUTING_TEXT_ARENA 32768       /* bytes of rendered text per decision */

/*
 * A parse/validation error: the JSON path of the bad node and the reason, in the manner
 * of h2o's "file:line: reason". text is "path: reason" (or just the reason when the
 * whole document is at fault), ready to print after the file name.
 */
typedef struct routing_error {
    char path[160];   /* e.g. "rules[2].when.regex"; "" for the document itself */
    int line, column; /* JSON syntax errors only (1-based), else 0 */
    char reason[320];
    char text[512];
} routing_error_t;

typedef enum routing_action_type {
    ROUTING_ACT_AUTO_REPLY = 0,
    ROUTING_ACT_GO_TO_FLOW,
    ROUTING_ACT_FILL_FORM,
    ROUTING_ACT_FORWARD_SMS,
    ROUTING_ACT_AI_ASSISTANT,
    ROUTING_ACT_TRIGGER_AUTOMATION,
    ROUTING_ACT_CREATE_LEAD,
    ROUTING_ACT_ADD_TAG,
    ROUTING_ACT_REMOVE_TAG,
    ROUTING_ACT_OPT_OUT,
    ROUTING_ACT_OPT_IN,
    /* Only in decisions, never in documents: */
    ROUTING_ACT_HELP,          /* carrier HELP: send the org's help text */
    ROUTING_ACT_FORM_ANSWER,   /* store field=value on the contact, send the next prompt or "done" */
    ROUTING_ACT_FORM_REPROMPT, /* the answer failed the field's pattern: send error + prompt again */
    ROUTING_ACT__COUNT
} routing_action_type_t;

typedef enum routing_reply_mode {
    ROUTING_REPLY_TWIML = 0, /* answer in the webhook's TwiML */
    ROUTING_REPLY_QUEUED,    /* queue through the outbox/scheduler */
} routing_reply_mode_t;

typedef enum routing_keyword_match {
    ROUTING_MATCH_FIRST_WORD = 0,
    ROUTING_MATCH_MESSAGE,
} routing_keyword_match_t;

struct routing_tmpl; /* a compiled merge-field template (internal) */
struct routing_rx;   /* a compiled regex (internal) */

typedef struct routing_form_field {
    const char *name;    /* contact attribute the answer is stored under */
    const char *prompt;  /* template source */
    const char *pattern; /* regex source the answer must match */
    const char *error;   /* template source, or NULL (a default is used) */
    const struct routing_tmpl *prompt_tmpl, *error_tmpl;
    const struct routing_rx *rx;
} routing_form_field_t;

/* One compiled action of a rule. Strings are NUL-terminated and owned by the ruleset. */
typedef struct routing_action {
    routing_action_type_t type;
    union {
        struct {
            const char *body; /* template source */
            routing_reply_mode_t mode;
            const struct routing_tmpl *tmpl;
        } reply;
        struct {
            const char *flow;
            const char *endpoint; /* URL or NULL */
        } flow;
        struct {
            const char *form;
            const routing_form_field_t *fields;
            size_t n_fields;
            const char *done; /* template source */
            const struct routing_tmpl *done_tmpl;
        } form;
        struct {
            const char *to;     /* E.164 staff number */
            const char *prefix; /* template source or NULL */
            const struct routing_tmpl *prefix_tmpl;
        } forward;
        struct {
            const char *endpoint;
            unsigned timeout_ms; /* default 10000 */
            const char *prompt;  /* or NULL */
        } ai;
        struct {
            const char *url;
            const char *event;
            const char *secret; /* HMAC key or NULL; never print it */
        } automation;
        struct {
            const char *source; /* or NULL */
        } lead;
        struct {
            const char *tag;
        } tag;
    } u;
} routing_action_t;

typedef struct routing_ruleset routing_ruleset_t;

/*
 * Parses and validates a rule-set document json[0..len) (need not be NUL-terminated),
 * compiles its regexes (PCRE2 JIT when available) and keyword index, and stores a new
 * ruleset with one reference in *out (free with rules_unref()). On failure returns
 * ROUTING_ESYNTAX, ROUTING_EINVALID or ROUTING_ETOOBIG, fills *err (may be NULL) and
 * leaves *out NULL.
 */
ROUTING_MUSTCHECK int rules_compile(const char *json, size_t len, routing_ruleset_t **out,
                                    routing_error_t *err);

/* Takes one more reference on rs (atomic) and returns it. */
routing_ruleset_t *rules_ref(routing_ruleset_t *rs);

/* Drops one reference (atomic, any thread); the last one frees the set. NULL is a no-op. */
void rules_unref(routing_ruleset_t *rs);

/* The receiving number of the document (borrowed). */
const char *rules_number(const routing_ruleset_t *rs);

/* Number of rules, and the name of rule i (borrowed). */
size_t rules_count(const routing_ruleset_t *rs);
const char *rules_name(const routing_ruleset_t *rs, size_t i);

/* Actions of rule i (borrowed array of *n). */
const routing_action_t *rules_actions(const routing_ruleset_t *rs, size_t i, size_t *n);

/* Stored version (rule_sets.version) the set was loaded from; 0 until set. Set it before publishing. */
int rules_version(const routing_ruleset_t *rs);
void rules_set_version(routing_ruleset_t *rs, int version);

/* "auto-reply", ..., "help", "form-answer", "form-reprompt" (static), or "?" */
const char *routing_action_name(routing_action_type_t type);

/* Returns a static description of a ROUTING_E* code. */
const char *routing_strerror(int err);

/* ---- evaluation ---- */

typedef struct routing_attr {
    const char *key;
    const char *value;
} routing_attr_t;

/* One inbound message and what is known about its sender. Everything is borrowed. */
typedef struct routing_input {
    const char *body; /* any bytes; invalid UTF-8 is replaced by U+FFFD for matching */
    size_t body_len;
    const char *from; /* contact, E.164 (merge field {{phone}}) */
    const char *to;   /* our number */
    const char *const *tags;     /* contact tags */
    size_t n_tags;
    const routing_attr_t *attrs; /* contact attributes: merge fields {{key}} */
    size_t n_attrs;
    const char *form; /* form in progress (conversations.form_state.form) or NULL */
    int form_step;    /* index of the field being asked */
    const kw_result_t *carrier; /* carrier keyword result, or NULL to compute it here */
    const char *opt_out_text, *opt_in_text, *help_text; /* org's texts; NULL or "": defaults below */
} routing_input_t;

#define ROUTING_DEFAULT_OPT_OUT_TEXT \
    "You have been unsubscribed and will receive no more messages. Reply START to resubscribe."
#define ROUTING_DEFAULT_OPT_IN_TEXT "You have been resubscribed. Reply STOP to unsubscribe."
#define ROUTING_DEFAULT_HELP_TEXT "Reply STOP to unsubscribe. Msg&data rates may apply."
#define ROUTING_DEFAULT_FORM_ERROR "Sorry, that doesn't look right."

typedef enum routing_source {
    ROUTING_SRC_RULE = 0, /* a rule's action */
    ROUTING_SRC_CARRIER,  /* carrier keyword (or free-text revocation) */
    ROUTING_SRC_FORM,     /* answer to a form in progress */
} routing_source_t;

/*
 * One thing to do. The applier records each one as a conversation event (see
 * routing_action_to_json()) and applies it, all in the webhook's transaction.
 */
typedef struct routing_out_action {
    routing_action_type_t type;
    routing_source_t source;
    int rule_index;                /* index of rule_name, -1 for CARRIER */
    int action_index;              /* index within the rule, -1 likewise */
    const char *rule_name;         /* the rule (for FORM: the rule whose fill-form it is); NULL for CARRIER */
    const routing_action_t *spec;  /* the compiled action (fields), NULL for carrier pseudo-actions */
    /*
     * Rendered text (NUL-terminated) or NULL: the reply to the contact, or for
     * forward-sms the copy (prefix + body) to send to spec->u.forward.to.
     */
    const char *text;
    size_t text_len;
    routing_reply_mode_t mode;     /* how to send text */
    const char *keyword;           /* carrier keyword ("STOP", or "" for free text) for source CARRIER */
    const char *field;             /* FORM_ANSWER: the contact attribute to set */
    const char *value;             /* FORM_ANSWER: the answer (trimmed) */
    size_t value_len;
    int noop;                      /* add-tag of a present tag, remove-tag of an absent one */
} routing_out_action_t;

typedef enum routing_form_op {
    ROUTING_FORM_KEEP = 0, /* leave conversations.form_state as it is */
    ROUTING_FORM_SET,      /* write {"form": form, "step": step} */
    ROUTING_FORM_CLEAR,    /* write NULL: done, cancelled by opt-out, or unknown after a reload */
} routing_form_op_t;

typedef struct routing_form_change {
    routing_form_op_t op;
    const char *form; /* SET: form name */
    int step;         /* SET: field index asked next */
} routing_form_change_t;

/* Decision flags. */
#define ROUTING_F_LIMIT_HIT (1u << 0)    /* a regex hit the match/depth/JIT-stack limit: counted as no match */
#define ROUTING_F_BUDGET (1u << 1)       /* too many limit hits: later regex rules were skipped */
#define ROUTING_F_INVALID_UTF8 (1u << 2) /* body was not valid UTF-8 (matched with U+FFFD) */
#define ROUTING_F_BODY_CUT (1u << 3)     /* body longer than ROUTING_MAX_BODY: only its head was matched */
#define ROUTING_F_TRUNCATED (1u << 4)    /* too many matched rules/actions or text: output cut */
#define ROUTING_F_CARRIER (1u << 5)      /* a carrier keyword decided */
#define ROUTING_F_FORM (1u << 6)         /* a form in progress consumed the message */
#define ROUTING_F_NO_RULES (1u << 7)     /* evaluated without a ruleset */

struct routing_scratch;

/*
 * The outcome of one evaluation. The caller allocates it and calls routing_decision_init()
 * once; it can then be reused for any number of evaluations (that is how the hot path
 * avoids allocating) and is released with routing_decision_close(). Not thread-safe: one
 * per thread. Pointers in it stay valid until the next evaluation or close, and while a
 * reference on the ruleset is held.
 */
typedef struct routing_decision {
    unsigned flags;
    kw_result_t carrier;
    size_t n_matched;
    struct {
        int index;
        const char *name;
    } matched[ROUTING_MAX_MATCHED];
    size_t n_actions;
    routing_out_action_t actions[ROUTING_MAX_OUT_ACTIONS];
    routing_form_change_t form;
    size_t n_limit_rules;
    int limit_rules[ROUTING_MAX_LIMIT_HITS]; /* rule indices (or -1 for a form field) that hit a limit */
    struct routing_scratch *scratch;         /* private */
} routing_decision_t;

/* Prepares a decision (allocates the PCRE2 match data and JIT stack; aborts on OOM). */
void routing_decision_init(routing_decision_t *d);

/* Frees what routing_decision_init() allocated. */
void routing_decision_close(routing_decision_t *d);

/*
 * Evaluates one message against rs (NULL: no rules for this number, carrier keywords
 * still apply) and fills *out. Pure and deterministic: no I/O, no allocation, the same
 * input gives the same decision. Returns 0, or ROUTING_EARG.
 */
ROUTING_MUSTCHECK int routing_evaluate(const routing_ruleset_t *rs, const routing_input_t *in,
                                       routing_decision_t *out);

/*
 * The event detail for one action, as recorded in conversation_events.detail: type, rule,
 * text, fields (a trigger-automation secret is never included). New reference; json_decref().
 */
json_t *routing_action_to_json(const routing_out_action_t *a);

/*
 * The same detail as JSON text, for the webhook's hot path: appends its members
 * ("type":...,"source":..., never empty) without the braces, so the caller can add its
 * own; the text is what json_dumps(routing_action_to_json(a), JSON_COMPACT) writes
 * between them. Returns 0 or BUF_ETOOBIG.
 */
ROUTING_MUSTCHECK int routing_action_write_json(buf_t *b, const routing_out_action_t *a);

/* The whole decision (flags, matched rules, actions, form change). New reference. */
json_t *routing_decision_to_json(const routing_decision_t *d);

/* ---- registry of live rule sets ---- */

typedef struct routing_registry routing_registry_t;

/* Creates an empty registry; free with routing_registry_free(). */
routing_registry_t *routing_registry_new(void);

/* Drops the registry's references and frees it. No other thread may be using it. */
void routing_registry_free(routing_registry_t *reg);

/*
 * Publishes rs for (org_id, number), taking over the caller's reference (NULL removes the
 * entry). The previous set loses the registry's reference and is freed once no evaluation
 * holds one. Returns 0.
 */
ROUTING_MUSTCHECK int routing_registry_swap(routing_registry_t *reg, int64_t org_id, const char *number,
                                            routing_ruleset_t *rs);

/* Returns a new reference to the live set for (org_id, number), or NULL. Release with rules_unref(). */
routing_ruleset_t *routing_registry_acquire(routing_registry_t *reg, int64_t org_id, const char *number);

#endif
