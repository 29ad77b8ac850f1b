/*
 * Internals shared by the simulator's files: configuration, the message store, the
 * per-sender schedule, the event timeline (status changes, callbacks, handset
 * replies) and the HTTP API. One sim_t per process, all on one libuv loop.
 */
#ifndef HERALD_TWILIO_SIM_H
#define HERALD_TWILIO_SIM_H
#include "common/buf.h"
#include "http/client.h"
#include "http/router.h"
#include "http/server.h"

#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#define SIM_MAX_API_KEYS 8
#define SIM_MAX_ACCOUNTS 16 /* the main account (--account-sid) and up to 15 more (--account) */
#define SIM_MAX_HANDSETS 64
#define SIM_API_VERSION "2010-04-01"
#define SIM_WEBHOOK_INFLIGHT 32      /* webhooks handed to the HTTP client at once */
#define SIM_WEBHOOK_QUEUE_MAX 500000 /* default --callback-queue-max (about 200 MB at most) */
#define SIM_WEBHOOK_ATTEMPTS 12      /* default --callback-attempts (about 4 minutes of backoff) */

typedef struct sim_api_key {
    char *sid;
    char *secret;
} sim_api_key_t;

/* A configured number that answers messages sent to it. */
typedef struct sim_handset {
    char *number;
    double stop_ratio; /* fraction of received messages answered with STOP */
    char *reply;       /* text answered otherwise, or NULL for silence */
    unsigned delay_ms; /* after delivery */
} sim_handset_t;

typedef struct sim_config {
    char *listen_host;
    int listen_port;
    char *port_file;
    char *account_sid; /* the main account: accounts[0] */
    char *auth_token;
    /* Every account the simulator serves: [0] is the main one; --account adds more. */
    sim_api_key_t accounts[SIM_MAX_ACCOUNTS]; /* sid, secret = auth token */
    size_t naccounts;
    sim_api_key_t api_keys[SIM_MAX_API_KEYS]; /* API keys of the main account */
    size_t napi_keys;
    char *ledger_path;
    char *inbound_url;
    char *public_url; /* base URL the sim believes it is reached at (for list uris); unused in signatures */
    double mps_override; /* --mps: segments/s for every sender when > 0 */
    double mps_long, mps_tollfree, mps_short;
    size_t concurrency;
    double fail_500, fail_429, lose_response, drop_connection;
    unsigned latency_ms, latency_jitter_ms;
    double ratio_undelivered, ratio_failed;
    unsigned sending_ms;  /* queued -> sent time once a message leaves the queue */
    unsigned delivery_ms; /* sent -> delivered/undelivered */
    unsigned queue_max_s; /* a sender queue longer than this fails new messages with 30001 */
    int test_credentials;
    uint64_t seed;
    size_t max_messages;
    sim_handset_t handsets[SIM_MAX_HANDSETS];
    size_t nhandsets;
    size_t callback_queue_max;    /* webhooks waiting (queued, backing off or in flight) before drops */
    unsigned callback_backoff_ms; /* first retry delay; doubles per attempt up to 30 s */
    unsigned callback_attempts;   /* deliveries tried per webhook before it is dropped */
    int quiet;
} sim_config_t;

typedef enum sim_final {
    SIM_FINAL_DELIVERED,
    SIM_FINAL_UNDELIVERED,
    SIM_FINAL_FAILED,
} sim_final_t;

typedef struct sim_msg {
    uint64_t seq; /* 0: free slot */
    char sid[35];
    const char *from; /* NULL with a Messaging Service until a sender is picked */
    const char *to;
    const char *body;
    const char *msid;
    const char *status_callback;
    char *strings; /* one block holding all the strings above */
    unsigned segments;
    unsigned num_media;
    unsigned account; /* index into cfg.accounts */
    int64_t created_ms;
    int64_t send_ms; /* leaves the queue: "sending" */
    int64_t sent_ms;
    int64_t final_ms;
    sim_final_t final;
    int error_code;       /* for undelivered/failed */
    int immediate_failed; /* queue overflow: failed at creation */
    int inbound;          /* direction "inbound" (injected) */
} sim_msg_t;

typedef struct sim_strmap sim_strmap_t;

typedef struct sim_event {
    int64_t at_ms;
    uint64_t seq;
    int kind;
} sim_event_t;

typedef struct webhook webhook_t;

typedef struct sim {
    uv_loop_t *loop;
    sim_config_t cfg;
    http_server_t *server;
    http_router_t *router;
    http_client_t *client;
    uv_signal_t sigterm, sigint;
    uv_timer_t flush_timer;
    uv_timer_t event_timer;
    FILE *ledger;
    buf_t ledger_buf; /* one ledger line */
    buf_t scratch;    /* response bodies on the hot path */
    uint64_t rng;
    uint64_t salt;
    /* message ring */
    sim_msg_t *msgs;
    uint64_t next_seq;
    sim_strmap_t *senders; /* sender -> int64_t* next free ms */
    sim_strmap_t *optouts; /* "to\nfrom" -> present */
    sim_event_t *events;
    size_t nevents, events_cap;
    size_t inflight_api;
    /* outgoing webhooks (events.c): FIFO, retry heap by due time, counts */
    webhook_t *wh_head, *wh_tail;
    webhook_t **retry;
    size_t nretry, retry_cap;
    uv_timer_t retry_timer;
    int retry_timer_init;
    size_t webhooks_pending; /* handed to the HTTP client */
    size_t webhooks_waiting; /* queued + backing off + pending */
    int stopping;
    char *basic_accounts[SIM_MAX_ACCOUNTS]; /* base64(account:token) */
    char *basic_keys[SIM_MAX_API_KEYS];
    uint64_t stat_created, stat_lost, stat_callbacks, stat_callback_errors;
    uint64_t stat_callbacks_delivered, stat_callback_retries, stat_callbacks_dropped;
} sim_t;

/* store.c */
void sim_store_init(sim_t *s);
void sim_store_close(sim_t *s);
/* Allocates the next message slot (evicting the oldest when full) and fills its sid. */
sim_msg_t *sim_store_add(sim_t *s);
/* Sets the message's strings (copied into one block). Any may be NULL. */
void sim_msg_set_strings(sim_msg_t *m, const char *from, const char *to, const char *body, const char *msid,
                         const char *status_callback);
/* Finds a stored message by sid, or NULL. */
sim_msg_t *sim_store_find(sim_t *s, const char *sid);
sim_msg_t *sim_store_by_seq(sim_t *s, uint64_t seq);
/* Current status name at now_ms. */
const char *sim_msg_status(const sim_msg_t *m, int64_t now_ms);
/* Appends the message's Twilio JSON representation. */
int sim_msg_json(const sim_t *s, const sim_msg_t *m, int64_t now_ms, buf_t *out);
/* Appends s as a JSON string literal (with quotes), or null for NULL. */
int sim_json_str(buf_t *out, const char *s);
/* Formats ms since the epoch as RFC 2822 ("Thu, 30 Jul 2015 20:12:31 +0000"). */
void sim_rfc2822(int64_t ms, char out[40]);
void sim_ledger_write(sim_t *s, const sim_msg_t *m, int lost);

/* util.c */
sim_strmap_t *sim_strmap_new(void);
void sim_strmap_free(sim_strmap_t *m);
/* Returns the slot for key, creating a zeroed one when create is set; NULL if absent. */
int64_t *sim_strmap_get(sim_strmap_t *m, const char *key, int create);
int sim_strmap_del(sim_strmap_t *m, const char *key);
uint64_t sim_rand(sim_t *s);
double sim_rand01(sim_t *s);
int64_t sim_now_ms(void);
/* Base64 of n bytes into out (NUL-terminated); out needs 4*((n+2)/3)+1 bytes. */
void sim_base64(const unsigned char *in, size_t n, char *out);

/* events.c */
void sim_events_init(sim_t *s);
/* Discards the webhooks not yet handed to the client (counted as dropped); returns how many. */
size_t sim_events_stop(sim_t *s);
void sim_events_close(sim_t *s);
/* Schedules the status timeline, callbacks and handset replies of a new message. */
void sim_events_message_created(sim_t *s, const sim_msg_t *m);
/* Delivers an inbound SMS to account: opt-out bookkeeping, ledger, and the signed webhook. */
void sim_inbound(sim_t *s, unsigned account, const char *from, const char *to, const char *body);

/* api.c */
void sim_api_init(sim_t *s);
void sim_api_close(sim_t *s);
/* Whether to replied STOP to from (and has not opted back in). */
int sim_opted_out(sim_t *s, const char *to, const char *from);
void sim_set_opt_out(sim_t *s, const char *handset, const char *sender, int out);

#endif
