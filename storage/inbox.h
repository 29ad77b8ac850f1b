/*
 * The CRM inbox in SQL: conversations per (org, our number, contact), their messages,
 * agent replies, read/close/reopen. Shared by the HTTP API (async, db_query) and the
 * CLI (cli_exec): these functions only build statements and parameters; callers run
 * them on whatever connection they have. Every statement is scoped by org_id, so a
 * conversation of another org is simply "not found".
 *
 * List statements return, per row: id, sort key (microseconds since the epoch), the
 * row as JSON text, then display columns (for conversations, only when the filter
 * asks for them); they fetch limit + 1 rows so the caller knows whether there is a
 * next page (see inbox_page_json()).
 */
#ifndef HERALD_STORAGE_INBOX_H
#define HERALD_STORAGE_INBOX_H
#include "common/buf.h"

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#define INBOX_EINVAL (-1) /* a filter value is malformed (the reason is set) */

#define INBOX_LIMIT_DEFAULT 50
#define INBOX_LIMIT_MAX 200
#define INBOX_MAX_PARAMS 10
#define INBOX_Q_MAX 256     /* bytes of a full-text query */
#define INBOX_BODY_MAX 1600 /* characters (encoded units) of an agent reply */

typedef struct inbox_filter {
    int64_t org_id;
    const char *status; /* "open", "closed" or NULL */
    const char *tag;    /* or NULL */
    const char *number; /* our number (E.164) or NULL */
    const char *q;      /* words that must all occur in the conversation's messages, or NULL */
    int unread;         /* 1: only conversations with unread messages */
    size_t limit;       /* 1..INBOX_LIMIT_MAX (0: default) */
    int has_after;      /* continue after (after_key, after_id) */
    int64_t after_key;  /* last_message_at in microseconds */
    int64_t after_id;
    int display;        /* 1: add the display columns of the CLI's table (cmd_inbox.c) */
} inbox_filter_t;

/* A built statement: sql and its text parameters (storage inside the struct). */
typedef struct inbox_stmt {
    buf_t sql;
    const char *params[INBOX_MAX_PARAMS];
    int nparams;
    char store[INBOX_MAX_PARAMS][32];
    size_t limit; /* rows asked for by the caller (the statement fetches one more) */
} inbox_stmt_t;

/* Frees a statement built by one of the functions below. */
void inbox_stmt_close(inbox_stmt_t *st);

/*
 * Builds the conversation list for f. Returns 0, or INBOX_EINVAL with *reason set
 * (static) and st left closed.
 */
__attribute__((warn_unused_result)) int inbox_conversations_stmt(const inbox_filter_t *f, inbox_stmt_t *st,
                                                                 const char **reason);

/*
 * Builds the message list of conversation conv (oldest first), after message id
 * after_id (0: from the start). The statement returns no rows when conv is not org's.
 */
void inbox_messages_stmt(int64_t org_id, int64_t conv, int64_t after_id, size_t limit, inbox_stmt_t *st);

/*
 * Writes {"data":[...],"next_cursor":...} for a list result into out. cursor_fn
 * encodes the last row's (key, id) as a cursor string into a 64-byte buffer.
 * Returns 0 or BUF_ETOOBIG.
 */
__attribute__((warn_unused_result)) int inbox_page_json(const PGresult *res, size_t limit,
                                                        void (*cursor_fn)(int64_t key, int64_t id, char out[64]),
                                                        buf_t *out);

/*
 * SQL, $1 org_id, $2 conversation id: 1 row (the conversation's id) when it exists
 * in org, else none. Used to tell an empty page from a conversation that is not found.
 */
extern const char inbox_sql_conversation_exists[];

/*
 * SQL for an agent or AI reply. $1 org_id, $2 conversation id, $3 body, $4 segments,
 * $5 encoding, $6 source ('reply' or 'auto_reply'), $7 actor. Returns one row
 * (outcome, outbox_id, message_id): outcome 'queued', or 'suppressed' (nothing
 * written); no row when the conversation is not org's.
 */
extern const char inbox_sql_queue_reply[];

/* SQL: mark read. $1 org_id, $2 id. Returns the conversation JSON, or no row. */
extern const char inbox_sql_mark_read[];

/* SQL: set status. $1 org_id, $2 id, $3 'open' or 'closed'. Returns the JSON, or no row. */
extern const char inbox_sql_set_status[];

#endif
