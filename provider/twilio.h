/*
 * twilio_client: the Twilio Messages API client herald sends through, on top of
 * http_client (libcurl multi on the libuv loop). One client per account: it holds
 * at most max_concurrency requests in flight, each on its own kept-alive connection,
 * and queues up to max_queue more. Every outcome is reported through the callback
 * as a twilio_result_t, already classified by twilio_classify() as success,
 * retryable or terminal (with a suppression flag for recipients who opted out).
 * Credentials are copied into the client, wiped on close, and never logged.
 */
#ifndef HERALD_PROVIDER_TWILIO_H
#define HERALD_PROVIDER_TWILIO_H
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define TWILIO_EINVAL (-1)     /* bad argument: missing To/Body, no sender, bad sid */
#define TWILIO_ECONFIG (-2)    /* config lacks account sid or credentials, or base URL is bad */
#define TWILIO_EQUEUEFULL (-3) /* max_concurrency in flight and max_queue waiting */
#define TWILIO_ECLOSED (-4)    /* twilio_client_close() was already called */
#define TWILIO_ETOOBIG (-5)    /* the encoded request exceeds TWILIO_MAX_REQUEST_BODY */

#define TWILIO_DEFAULT_BASE_URL "https://api.twilio.com"
#define TWILIO_STATUS_CALLBACK_PATH "/connect/webhook/twilio/status"
#define TWILIO_MAX_REQUEST_BODY (64 * 1024)
#define TWILIO_MAX_RESPONSE_BODY (4 * 1024 * 1024)
#define TWILIO_MAX_PAGE_SIZE 1000
#define TWILIO_MAX_MEDIA 10

/*
 * All strings are borrowed by twilio_client_new(), which copies them. API key auth
 * (api_key_sid + api_key_secret) is used when both are set, else auth_token.
 * Zero numbers take defaults: 64 in flight, 100000 queued, 15 s per request, 5 s
 * to connect.
 */
typedef struct twilio_config {
    const char *account_sid;
    const char *auth_token;
    const char *api_key_sid;
    const char *api_key_secret;
    const char *base_url;              /* NULL: TWILIO_DEFAULT_BASE_URL */
    const char *from_number;           /* default sender */
    const char *messaging_service_sid; /* default sender, preferred over from_number */
    const char *public_url;            /* HERALD_PUBLIC_URL: StatusCallback = public_url + TWILIO_STATUS_CALLBACK_PATH */
    size_t max_concurrency;
    size_t max_queue;
    long timeout_ms;
    long connect_timeout_ms;
} twilio_config_t;

typedef enum twilio_outcome {
    TWILIO_OUTCOME_OK = 0,
    TWILIO_OUTCOME_RETRYABLE, /* try again later; nothing is known to have been sent, or it is unknown */
    TWILIO_OUTCOME_TERMINAL,  /* will never succeed as it is; do not retry */
} twilio_outcome_t;

/* What to do about one response: the result of twilio_classify(). */
typedef struct twilio_verdict {
    twilio_outcome_t outcome;
    unsigned suppress : 1; /* terminal because the recipient opted out: add To to suppression */
    unsigned pause : 1;    /* the account or configuration is broken (auth, URL): stop sending */
    const char *reason;    /* static, short, for logs and metrics */
} twilio_verdict_t;

/* A message resource as Twilio returns it (fields absent in the JSON are empty or 0). */
typedef struct twilio_message {
    char sid[40];
    char account_sid[40];
    char messaging_service_sid[40];
    char to[40];
    char from[40];
    char status[24]; /* queued, accepted, sending, sent, delivered, undelivered, failed, ... */
    int num_segments;
    int error_code;
    char error_message[256];
    char date_created[40]; /* RFC 2822, as sent */
    char date_sent[40];
    char direction[24];
    int has_body;       /* the response carried "body" (list pages; see twilio_body_hash()) */
    uint64_t body_hash; /* twilio_body_hash() of that body, for reconciliation */
} twilio_message_t;

/* The outcome of one operation; everything in it is valid only during the callback. */
typedef struct twilio_result {
    twilio_verdict_t verdict;
    long http_status; /* 0 when no HTTP response arrived */
    int code;         /* Twilio error code from the error body, 0 if none */
    int curl_code;    /* CURLcode, 0 when the transfer completed */
    char message[512]; /* Twilio's error message or the transport error; "" on success */
    twilio_message_t msg; /* create and fetch: the message */
} twilio_result_t;

/* What to send. Strings are borrowed for the duration of twilio_message_create(). */
typedef struct twilio_send {
    const char *to;                    /* E.164; required */
    const char *body;                  /* required unless media is given */
    const char *from;                  /* NULL: messaging_service_sid, else the config's sender */
    const char *messaging_service_sid; /* NULL: from, else the config's sender */
    const char *const *media_urls;     /* n_media entries, at most TWILIO_MAX_MEDIA */
    size_t n_media;
    const char *status_callback; /* NULL: from public_url; "": none */
    int validity_period;         /* seconds (1..36000); 0: not sent */
} twilio_send_t;

/* Reconciliation filters; NULL fields are not sent. Dates as Twilio takes them (YYYY-MM-DD). */
typedef struct twilio_list_query {
    const char *to;
    const char *from;
    const char *date_sent;        /* DateSent= */
    const char *date_sent_before; /* DateSent< */
    const char *date_sent_after;  /* DateSent> */
    unsigned page_size;           /* 0: Twilio's default (50); capped at TWILIO_MAX_PAGE_SIZE */
    size_t max_pages;             /* 0: 10000 */
} twilio_list_query_t;

typedef struct twilio_client twilio_client_t;

/* Called once per create or fetch. */
typedef void (*twilio_result_cb)(const twilio_result_t *res, void *arg);

/*
 * Called once per page of a list, with the messages of that page (borrowed) and
 * last set on the final call (no next_page_uri, max_pages reached, an error — then
 * res->verdict.outcome is not OK and n is 0 — or the callback asked to stop).
 * Return 0 to fetch the next page, non-zero to stop (no further call is made then).
 */
typedef int (*twilio_page_cb)(const twilio_result_t *res, const twilio_message_t *msgs, size_t n, int last,
                              void *arg);

/*
 * Fills cfg from the environment (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN,
 * TWILIO_API_KEY, TWILIO_API_SECRET, TWILIO_API_BASE_URL, TWILIO_FROM_NUMBER,
 * TWILIO_MESSAGING_SERVICE_SID, HERALD_PUBLIC_URL); the pointers are borrowed from
 * the environment. Numeric fields are zeroed (defaults).
 */
void twilio_config_from_env(twilio_config_t *cfg);

/*
 * Creates a client on loop, copying cfg. Returns 0 and sets *out, or TWILIO_ECONFIG.
 * Free with twilio_client_close().
 */
__attribute__((warn_unused_result)) int twilio_client_new(uv_loop_t *loop, const twilio_config_t *cfg,
                                                          twilio_client_t **out);

/*
 * Sends POST .../Messages.json. cb is called once, from a later loop iteration.
 * Returns 0, or TWILIO_EINVAL, TWILIO_ETOOBIG, TWILIO_EQUEUEFULL, TWILIO_ECLOSED
 * (then cb is never called).
 */
__attribute__((warn_unused_result)) int twilio_message_create(twilio_client_t *c, const twilio_send_t *msg,
                                                              twilio_result_cb cb, void *arg);

/* Sends GET .../Messages/{sid}.json; same contract as twilio_message_create(). */
__attribute__((warn_unused_result)) int twilio_message_fetch(twilio_client_t *c, const char *sid,
                                                             twilio_result_cb cb, void *arg);

/*
 * Lists messages matching q, page after page (following next_page_uri, which must
 * stay under this account's path), calling cb per page. Holds one concurrency slot
 * for the whole walk. Returns as twilio_message_create().
 */
__attribute__((warn_unused_result)) int twilio_message_list(twilio_client_t *c, const twilio_list_query_t *q,
                                                            twilio_page_cb cb, void *arg);

/* Requests in flight plus queued: callers use it for back-pressure. */
size_t twilio_client_pending(const twilio_client_t *c);

/* TCP connections opened so far (one per concurrency slot when connections are reused). */
unsigned long long twilio_client_connections_opened(const twilio_client_t *c);

/*
 * Stops the client: queued and in-flight operations get their callback at once
 * (retryable, "client closed"); closed_cb(arg) (may be NULL) runs when every handle
 * is closed and c has been freed. May be called from a callback.
 */
void twilio_client_close(twilio_client_t *c, void (*closed_cb)(void *arg), void *arg);

/*
 * Classifies an outcome. Pure and table-driven: curl_code (transport) first, then
 * Twilio's error code, then the HTTP status. Success is a 2xx with no transport
 * error; 429, 5xx, 20429, 30001 and transport failures are retryable; invalid
 * numbers, opt-outs (21610: suppress), permissions and auth (20003: pause) are
 * terminal. Status-callback ErrorCodes (3000x) may be passed with http_status 0.
 */
twilio_verdict_t twilio_classify(long http_status, int code, int curl_code);

/* Returns a static description of a TWILIO_E* code. */
/*
 * A 64-bit FNV-1a hash of a message body, so reconciliation can tell whether a
 * message Twilio lists is the one a row would send, without keeping whole bodies
 * of every listed message.
 */
uint64_t twilio_body_hash(const char *body, size_t len);

const char *twilio_strerror(int err);

#endif
