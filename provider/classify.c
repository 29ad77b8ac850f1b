/*
 * Error mapping for the Twilio client and the status-callback handler: one pure
 * function over (HTTP status, Twilio error code, curl code) and the table it reads.
 * Deciding "retry or give up" in one place keeps the scheduler, reconciliation and
 * the webhook handler from disagreeing about what a code means.
 */
#include "provider/twilio.h"

#include <curl/curl.h>

#include <stddef.h>

typedef struct code_rule {
    int code;
    twilio_outcome_t outcome;
    unsigned suppress : 1;
    unsigned pause : 1;
    const char *reason;
} code_rule_t;

#define R TWILIO_OUTCOME_RETRYABLE
#define T TWILIO_OUTCOME_TERMINAL

/* Twilio error codes (REST API 2xxxx, delivery 3xxxx); anything else falls to the HTTP status. */
static const code_rule_t code_rules[] = {
    {14107, R, 0, 0, "rate limited"},
    {20003, T, 0, 1, "authentication failed"},
    {20005, T, 0, 1, "account not active"},
    {20404, T, 0, 0, "resource not found"},
    {20429, R, 0, 0, "too many requests"},
    {20500, R, 0, 0, "twilio internal error"},
    {20503, R, 0, 0, "twilio unavailable"},
    {21211, T, 0, 0, "invalid To number"},
    {21212, T, 0, 1, "invalid From number"},
    {21408, T, 0, 0, "no permission for the destination region"},
    {21601, T, 0, 0, "To is not SMS-capable"},
    {21602, T, 0, 0, "Body is required"},
    {21603, T, 0, 0, "From is required"},
    {21604, T, 0, 0, "To is required"},
    {21606, T, 0, 1, "From is not owned or not SMS-capable"},
    {21608, T, 0, 0, "unverified number on a trial account"},
    {21610, T, 1, 0, "recipient opted out (STOP)"},
    {21611, R, 0, 0, "sender queue full"},
    {21612, T, 0, 0, "cannot route to To"},
    {21614, T, 0, 0, "To cannot receive SMS"},
    {21617, T, 0, 0, "Body too long"},
    {21619, T, 0, 0, "Body or MediaUrl required"},
    {21620, T, 0, 0, "invalid MediaUrl"},
    {30001, R, 0, 0, "queue overflow"},
    {30002, T, 0, 1, "account suspended"},
    {30003, T, 0, 0, "unreachable handset"},
    {30004, T, 0, 0, "message blocked"},
    {30005, T, 0, 0, "unknown destination"},
    {30006, T, 0, 0, "landline or unreachable carrier"},
    {30007, T, 0, 0, "carrier filtered"},
    {30008, R, 0, 0, "unknown delivery error"},
};

#undef R
#undef T

static twilio_verdict_t verdict(twilio_outcome_t o, int suppress, int pause, const char *reason)
{
    twilio_verdict_t v;

    v.outcome = o;
    v.suppress = suppress ? 1u : 0u;
    v.pause = pause ? 1u : 0u;
    v.reason = reason;
    return v;
}

static twilio_verdict_t classify_transport(int curl_code)
{
    switch (curl_code) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_LOGIN_DENIED:
        /* Nothing reached Twilio and nothing will until the configuration is fixed. */
        return verdict(TWILIO_OUTCOME_RETRYABLE, 0, 1, "client misconfigured");
    case CURLE_OPERATION_TIMEDOUT:
        return verdict(TWILIO_OUTCOME_RETRYABLE, 0, 0, "timeout");
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
        return verdict(TWILIO_OUTCOME_RETRYABLE, 0, 0, "could not connect");
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
        return verdict(TWILIO_OUTCOME_RETRYABLE, 0, 0, "connection lost");
    case CURLE_SEND_FAIL_REWIND:
        /* http/client.c refused curl's silent re-send after the body went out. */
        return verdict(TWILIO_OUTCOME_RETRYABLE, 0, 0, "connection lost after sending; outcome unknown");
    case CURLE_PARTIAL_FILE:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
        return verdict(TWILIO_OUTCOME_RETRYABLE, 0, 0, "truncated or malformed response");
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
        return verdict(TWILIO_OUTCOME_RETRYABLE, 0, 0, "response too large");
    case CURLE_ABORTED_BY_CALLBACK:
        return verdict(TWILIO_OUTCOME_RETRYABLE, 0, 0, "client closed");
    default:
        return verdict(TWILIO_OUTCOME_RETRYABLE, 0, 0, "transport error");
    }
}

twilio_verdict_t twilio_classify(long http_status, int code, int curl_code)
{
    if (curl_code != 0)
        return classify_transport(curl_code);
    if (code != 0) {
        for (size_t i = 0; i < sizeof(code_rules) / sizeof(code_rules[0]); i++) {
            const code_rule_t *r = &code_rules[i];
            if (r->code == code)
                return verdict(r->outcome, r->suppress, r->pause, r->reason);
        }
    }
    if (http_status == 429)
        return verdict(TWILIO_OUTCOME_RETRYABLE, 0, 0, "too many requests");
    if (http_status >= 500 && http_status <= 599)
        return verdict(TWILIO_OUTCOME_RETRYABLE, 0, 0, "server error");
    if (http_status == 408)
        return verdict(TWILIO_OUTCOME_RETRYABLE, 0, 0, "request timeout");
    if (code != 0)
        return verdict(TWILIO_OUTCOME_TERMINAL, 0, 0, "twilio error");
    if (http_status == 0 || (http_status >= 200 && http_status <= 299))
        return verdict(TWILIO_OUTCOME_OK, 0, 0, "ok");
    if (http_status == 401)
        return verdict(TWILIO_OUTCOME_TERMINAL, 0, 1, "authentication failed");
    if (http_status == 403)
        return verdict(TWILIO_OUTCOME_TERMINAL, 0, 1, "forbidden");
    if (http_status >= 400 && http_status <= 499)
        return verdict(TWILIO_OUTCOME_TERMINAL, 0, 0, "request rejected");
    /* 1xx and 3xx: the base URL points somewhere that is not the API. */
    return verdict(TWILIO_OUTCOME_RETRYABLE, 0, 1, "unexpected HTTP status");
}
