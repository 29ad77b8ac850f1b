/*
 * campaign_spec_t: the settings of a new campaign as `herald campaign create` and
 * POST /broadcast/campaigns receive them, one validation for both, and the INSERT
 * that stores them. Values are text as given (the HTTP API turns JSON numbers into
 * text first), so both front ends accept and refuse exactly the same things; error
 * messages name each field the way the caller calls it ("--rate" or "rate").
 */
#ifndef HERALD_APP_CAMPAIGN_SPEC_H
#define HERALD_APP_CAMPAIGN_SPEC_H
#include "compliance/quiet.h"

#include <jansson.h>
#include <stdint.h>

typedef enum campaign_field {
    CF_NAME,
    CF_BODY,
    CF_FROM,
    CF_MG, /* messaging service SID */
    CF_RATE,
    CF_START,
    CF_CRON,
    CF_TZ,
    CF_REGION,
    CF_QUIET,
    CF_FOOTER_POLICY,
    CF_FOOTER,
    CF_PRICE,
    CF_DEFAULTS,
    CF_COUNT
} campaign_field_t;

/* What the caller fills (all borrowed; NULL when not given). */
typedef struct campaign_spec {
    const char *v[CF_DEFAULTS];
    json_t *defaults; /* merge-field defaults: an object of field -> string; NULL for none */
    /* Filled by campaign_spec_check(): */
    char region[3];            /* upper case; "US" when not given */
    quiet_policy_t quiet;      /* when v[CF_QUIET] */
    const char *footer_policy; /* canonical name (static); "first" when not given */
} campaign_spec_t;

typedef struct campaign_spec_error {
    campaign_field_t field; /* the field at fault */
    char msg[384];          /* one line, naming the field as the caller does */
} campaign_spec_error_t;

/*
 * Checks s: required fields (name, body, exactly one sender), template syntax,
 * sender shapes, rate, ISO 8601 start, cron syntax (cron needs a zone), zone,
 * region, quiet hours, footer policy and text (with opt-out language), price and
 * merge-field defaults. names[f] is what the messages call field f. Returns 0, or
 * -1 with *err filled (the first fault found).
 */
__attribute__((warn_unused_result)) int
campaign_spec_check(campaign_spec_t *s, const char *const names[CF_COUNT], campaign_spec_error_t *err);

/* Parameters of the INSERTs below for a checked spec; the struct owns its buffers. */
typedef struct campaign_insert {
    const char *values[16];
    char org[24], qs[8], qe[8];
    char *defaults_json;
} campaign_insert_t;

#define CAMPAIGN_INSERT_NPARAMS 16

/* Fills p for org_id from a spec campaign_spec_check() accepted. Free with campaign_insert_free(). */
void campaign_insert_init(campaign_insert_t *p, const campaign_spec_t *s, int64_t org_id);
void campaign_insert_free(campaign_insert_t *p);

/* INSERT of a campaign (parameters from campaign_insert_t) answering its id. */
extern const char CAMPAIGN_INSERT_SQL[];

/* The same INSERT answering the campaign as JSON text, in the shape of CAMPAIGN_GET_SQL. */
extern const char CAMPAIGN_INSERT_JSON_SQL[];

/* One campaign as JSON text with its outbox counts by state: $1 org id, $2 campaign id. */
extern const char CAMPAIGN_GET_SQL[];

#endif
