/*
 * The CRM inbox in SQL: conversations per (org, our number, contact), their messages,
 * agent replies, read/close/reopen. Shared by the HTTP API (async, db_query) and the
 * CLI (cli_exec): these functions only build statements and parameters; callers run
 * them on whatever connection they have. Every statement is scoped by org_id, so a
 * conversation of another org is simply "not found".
 *
 * List statements return, per row: id and sort key (microseconds since the epoch)
 * first. The message list then has the row as JSON text and display columns; the
 * conversation list has the conversation's columns (INBOX_CONV_*, written as JSON by
 * inbox_conversation_json()), then display columns when the filter asks for them.
 * They fetch limit + 1 rows so the caller knows whether there is a next page (see
 * inbox_page_json()). Statements that answer one conversation (inbox_sql_conversation,
 * _mark_read, _set_status) return the same INBOX_CONV_NCOLS columns.
 */
#ifndef HERALD_STORAGE_INBOX_H
#define HERALD_STORAGE_INBOX_H
#include "common/buf.h"

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#define INBOX_EINVAL (-1) /* a filter value is malformed (the reason is set) */
#define INBOX_EROW (-4)   /* a conversation's column is not what the statement returns */

/* The columns of a conversation, in the order every statement returns them. */
enum inbox_conv_col {
    INBOX_CONV_ID,               /* bigint */
    INBOX_CONV_LAST_MESSAGE_AT,  /* microseconds since the epoch, or NULL (also the list's sort key) */
    INBOX_CONV_OUR_NUMBER,       /* text */
    INBOX_CONV_CONTACT,          /* text (contact_e164) */
    INBOX_CONV_STATUS,           /* text */
    INBOX_CONV_UNREAD,           /* int */
    INBOX_CONV_PREVIEW,          /* text or NULL (last_message_preview) */
    INBOX_CONV_LAST_CAMPAIGN_ID, /* bigint or NULL */
    INBOX_CONV_TAGS,             /* text[] literal */
    INBOX_CONV_FORM_STATE,       /* jsonb (its text is JSON) or NULL */
    INBOX_CONV_CREATED_AT,       /* microseconds since the epoch */
    INBOX_CONV_NCOLS
};
/* The display columns of the CLI's conversation table, after the conversation's. */
#define INBOX_CONV_DISPLAY_TIME INBOX_CONV_NCOLS       /* last activity, YYYY-MM-DDTHH:MM:SSZ */
#define INBOX_CONV_DISPLAY_TAGS (INBOX_CONV_NCOLS + 1) /* tags joined by ',' */

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
    size_t limit;      /* rows asked for by the caller (the statement fetches one more) */
    int conversations; /* 1: rows are conversations' columns; 0: column 2 is the row's JSON */
} inbox_stmt_t;

/* Frees a statement built by one of the functions below. */
void inbox_stmt_close(inbox_stmt_t *st);

/*
 * Builds the conversation list for f. Returns 0, or INBOX_EINVAL with *reason set
 * (static) and st left closed. Without f->display the SQL is inbox_sql_conversations,
 * so a caller may run that statement prepared with st's parameters instead.
 */
__attribute__((warn_unused_result)) int inbox_conversations_stmt(const inbox_filter_t *f, inbox_stmt_t *st,
                                                                 const char **reason);

/*
 * Builds the message list of conversation conv (oldest first), after message id
 * after_id (0: from the start). The statement returns no rows when conv is not org's.
 */
void inbox_messages_stmt(int64_t org_id, int64_t conv, int64_t after_id, size_t limit, inbox_stmt_t *st);

/* The conversation list's SQL without display columns ($1..$9 as inbox_conversations_stmt() sets them). */
extern const char inbox_sql_conversations[];

/*
 * Writes {"data":[...],"next_cursor":...} for the result of st into out. cursor_fn
 * encodes the last row's (key, id) as a cursor string into a 64-byte buffer.
 * Returns 0, BUF_ETOOBIG or an error of inbox_conversation_json().
 */
__attribute__((warn_unused_result)) int inbox_page_json(const PGresult *res, const inbox_stmt_t *st,
                                                        void (*cursor_fn)(int64_t key, int64_t id, char out[64]),
                                                        buf_t *out);

/*
 * Appends the JSON object of a conversation from its columns (text as libpq gives
 * it, NULL for SQL NULL, indexed by enum inbox_conv_col): the values and the key
 * order of json_build_object() over the row with the session TimeZone UTC, written
 * compactly: {"id":1,"our_number":"+1...","contact":"+1...","status":"open",
 * "unread":0,"last_message_at":"2026-09-24T23:04:01.17502+00:00",
 * "last_message_preview":"...","last_campaign_id":null,"tags":["vip"],
 * "form_state":null,"created_at":"..."}. Returns 0, BUF_ETOOBIG, JSONW_EUTF8 (text
 * that is not UTF-8) or INBOX_EROW (a malformed number, timestamp or tags literal).
 */
__attribute__((warn_unused_result)) int inbox_conversation_json(const char *const cols[INBOX_CONV_NCOLS],
                                                                buf_t *out);

/* inbox_conversation_json() of row row of res, whose columns start at col. */
__attribute__((warn_unused_result)) int inbox_conversation_json_row(const PGresult *res, int row, int col,
                                                                    buf_t *out);

/*
 * SQL, $1 org_id, $2 conversation id: the conversation's columns (INBOX_CONV_NCOLS),
 * or no row when it is not org's.
 */
extern const char inbox_sql_conversation[];

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

/* SQL: mark read. $1 org_id, $2 id. Returns the conversation's columns, or no row. */
extern const char inbox_sql_mark_read[];

/* SQL: set status. $1 org_id, $2 id, $3 'open' or 'closed'. Returns its columns, or no row. */
extern const char inbox_sql_set_status[];

#endif
