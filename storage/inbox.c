/*
 * Inbox statements (see inbox.h), built with numbered parameters only, never with
 * caller text in the SQL. A list page is two steps in one statement: the SQL function
 * herald_inbox_page() of migration 008 picks the page's keys (an index range from the
 * cursor in list order, last_message_at DESC, id DESC, or for a rare tag or word a GIN
 * lookup of the few matching rows: the migration has the figures), and the rows of
 * those keys are read for the page alone, by ctid (the function runs in the same
 * snapshot, so a ctid names the very row version it chose).
 *
 * A conversation comes back as plain columns and its JSON is written here
 * (inbox_conversation_json()): json_build_object() cost Postgres about 8 us a row
 * (type lookups per call, timestamp output, escaping), half of a page's statement; the
 * columns cost it under 1 us, and writing the JSON here costs less than that. The
 * timestamps come as epoch microseconds and the tags as their array literal, the
 * cheapest forms to produce (array_to_json() cost 0.25 us a row more; see
 * docs/inbox.md).
 */
#include "storage/inbox.h"

#include "common/jsonw.h"
#include "storage/pgjson.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* In the order of enum inbox_conv_col. */
#define CONV_COLS                                                                                            \
    "c.id, (extract(epoch FROM c.last_message_at) * 1000000)::bigint, c.our_number, c.contact_e164, "        \
    "c.status, c.unread, c.last_message_preview, c.last_campaign_id, c.tags, c.form_state, "                 \
    "(extract(epoch FROM c.created_at) * 1000000)::bigint"

/* The keys come with each row's ctid, so the rows are read again without an index. */
#define LIST_FROM                                                                                            \
    " FROM herald_inbox_page($1::bigint, $2::text, $3::text, $4::text, $5::text, $6::boolean, $7::bigint, "  \
    "$8::bigint, $9::int) k JOIN conversations c ON c.ctid = k.row_tid ORDER BY k.last_message_at DESC, "    \
    "k.id DESC"

const char inbox_sql_conversations[] = "SELECT " CONV_COLS LIST_FROM;

static const char conversations_display_sql[] =
    "SELECT " CONV_COLS ", to_char(c.last_message_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
    "array_to_string(c.tags, ',')" LIST_FROM;

const char inbox_sql_conversation[] =
    "SELECT " CONV_COLS " FROM conversations c WHERE c.org_id = $1 AND c.id = $2";

const char inbox_sql_conversation_exists[] = "SELECT id FROM conversations WHERE org_id = $1 AND id = $2";

const char inbox_sql_queue_reply[] =
    "WITH c AS (SELECT id, contact_id, contact_e164, our_number FROM conversations"
    "            WHERE org_id = $1::bigint AND id = $2::bigint),"
    " s AS (SELECT EXISTS (SELECT 1 FROM suppression s, c WHERE s.org_id = $1::bigint"
    "                      AND s.e164 = c.contact_e164) AS suppressed),"
    " o AS (INSERT INTO outbox (org_id, contact_id, to_e164, from_number, body, segments, encoding, source)"
    "       SELECT $1::bigint, c.contact_id, c.contact_e164, c.our_number, $3, $4::int, $5, $6"
    "         FROM c, s WHERE NOT s.suppressed RETURNING id),"
    " m AS (INSERT INTO messages (org_id, conversation_id, direction, body, outbox_id, status)"
    "       SELECT $1::bigint, $2::bigint, 'outbound', $3, o.id, 'queued' FROM o RETURNING id, outbox_id),"
    " e AS (INSERT INTO conversation_events (org_id, conversation_id, message_id, action, detail)"
    "       SELECT $1::bigint, $2::bigint, m.id, $6, jsonb_build_object('actor', $7::text, 'outbox_id', m.outbox_id)"
    "         FROM m),"
    " u AS (UPDATE conversations SET last_message_at = now(), last_message_preview = left($3, 140)"
    "        WHERE id = (SELECT id FROM c) AND EXISTS (SELECT 1 FROM o))"
    " SELECT CASE WHEN s.suppressed THEN 'suppressed' ELSE 'queued' END,"
    "        (SELECT outbox_id FROM m), (SELECT id FROM m)"
    "   FROM c, s";

const char inbox_sql_mark_read[] = "UPDATE conversations c SET unread = 0 WHERE c.org_id = $1 AND c.id = $2"
                                   " RETURNING " CONV_COLS;

const char inbox_sql_set_status[] = "UPDATE conversations c SET status = $3 WHERE c.org_id = $1 AND c.id = $2"
                                    " RETURNING " CONV_COLS;

void inbox_stmt_close(inbox_stmt_t *st)
{
    buf_close(&st->sql);
}

static const char *add_param(inbox_stmt_t *st, const char *value, char *num, size_t numlen)
{
    st->params[st->nparams++] = value;
    snprintf(num, numlen, "$%d", st->nparams);
    return num;
}

static const char *add_i64(inbox_stmt_t *st, int64_t v, char *num, size_t numlen)
{
    snprintf(st->store[st->nparams], sizeof(st->store[0]), "%" PRId64, v);
    return add_param(st, st->store[st->nparams], num, numlen);
}

static void must(int rc)
{
    /* The statement text is small and bounded by the code here, never by input. */
    if (rc != 0)
        abort();
}

int inbox_conversations_stmt(const inbox_filter_t *f, inbox_stmt_t *st, const char **reason)
{
    char n[16];
    size_t limit = f->limit ? f->limit : INBOX_LIMIT_DEFAULT;

    memset(st, 0, sizeof(*st));
    if (limit > INBOX_LIMIT_MAX) {
        *reason = "limit must be 1..200";
        return INBOX_EINVAL;
    }
    if (f->status && strcmp(f->status, "open") != 0 && strcmp(f->status, "closed") != 0) {
        *reason = "status must be open or closed";
        return INBOX_EINVAL;
    }
    if (f->q && strlen(f->q) > INBOX_Q_MAX) {
        *reason = "q is too long";
        return INBOX_EINVAL;
    }
    st->limit = limit;
    /* $1..$9 of herald_inbox_page(); a filter that is not given is NULL. */
    (void)add_i64(st, f->org_id, n, sizeof(n));
    (void)add_param(st, f->status, n, sizeof(n));
    (void)add_param(st, f->tag, n, sizeof(n));
    (void)add_param(st, f->number, n, sizeof(n));
    (void)add_param(st, f->q, n, sizeof(n));
    (void)add_param(st, f->unread ? "true" : "false", n, sizeof(n));
    if (f->has_after) {
        (void)add_i64(st, f->after_key, n, sizeof(n));
        (void)add_i64(st, f->after_id, n, sizeof(n));
    } else {
        (void)add_param(st, NULL, n, sizeof(n));
        (void)add_param(st, NULL, n, sizeof(n));
    }
    (void)add_i64(st, (int64_t)limit + 1, n, sizeof(n));
    st->conversations = 1;
    buf_init(&st->sql, 4096);
    must(buf_puts(&st->sql, f->display ? conversations_display_sql : inbox_sql_conversations));
    return 0;
}

void inbox_messages_stmt(int64_t org_id, int64_t conv, int64_t after_id, size_t limit, inbox_stmt_t *st)
{
    char a[16], b[16], c[16];

    memset(st, 0, sizeof(*st));
    if (limit == 0 || limit > INBOX_LIMIT_MAX)
        limit = INBOX_LIMIT_DEFAULT;
    st->limit = limit;
    buf_init(&st->sql, 4096);
    {
        const char *p1 = add_i64(st, org_id, a, sizeof(a));
        const char *p2 = add_i64(st, conv, b, sizeof(b));
        const char *p3 = add_i64(st, after_id, c, sizeof(c));
        must(buf_printf(&st->sql,
                        "SELECT m.id, 0::bigint, json_build_object('id', m.id, 'conversation_id', m.conversation_id, "
                        "'direction', m.direction, 'body', m.body, 'message_sid', m.message_sid, 'outbox_id', "
                        "m.outbox_id, 'media', m.media, 'status', m.status, 'created_at', m.created_at)::text, "
                        "m.direction, to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
                        "m.body, coalesce(m.status, ''), jsonb_array_length(m.media) "
                        "FROM messages m WHERE m.org_id = %s AND m.conversation_id = %s AND m.id > %s "
                        "ORDER BY m.id LIMIT %zu",
                        p1, p2, p3, limit + 1));
    }
}

/* A JSON number as Postgres prints an integer column: an optional '-' and digits. */
static int integer(const char *v)
{
    size_t i = v[0] == '-';
    return v[i] && strspn(v + i, "0123456789") == strlen(v + i);
}

static int timestamp(buf_t *b, const char *v)
{
    char *end;
    long long us;

    errno = 0;
    us = strtoll(v, &end, 10);
    if (!integer(v) || errno || *end)
        return INBOX_EROW;
    return pgjson_timestamptz(b, us);
}

int inbox_conversation_json(const char *const cols[INBOX_CONV_NCOLS], buf_t *out)
{
    /* The keys of json_build_object() in the order the API has always had. */
    static const struct {
        const char *key; /* with its quotes, the colon and the comma before it */
        enum inbox_conv_col col;
        enum { NUMBER, STRING, TIMESTAMP, TAGS, JSON } kind;
    } members[] = {
        {"{\"id\":", INBOX_CONV_ID, NUMBER},
        {",\"our_number\":", INBOX_CONV_OUR_NUMBER, STRING},
        {",\"contact\":", INBOX_CONV_CONTACT, STRING},
        {",\"status\":", INBOX_CONV_STATUS, STRING},
        {",\"unread\":", INBOX_CONV_UNREAD, NUMBER},
        {",\"last_message_at\":", INBOX_CONV_LAST_MESSAGE_AT, TIMESTAMP},
        {",\"last_message_preview\":", INBOX_CONV_PREVIEW, STRING},
        {",\"last_campaign_id\":", INBOX_CONV_LAST_CAMPAIGN_ID, NUMBER},
        {",\"tags\":", INBOX_CONV_TAGS, TAGS},
        {",\"form_state\":", INBOX_CONV_FORM_STATE, JSON},
        {",\"created_at\":", INBOX_CONV_CREATED_AT, TIMESTAMP},
    };
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < sizeof(members) / sizeof(members[0]); i++) {
        const char *v = cols[members[i].col];
        rc = buf_puts(out, members[i].key);
        if (rc != 0)
            break;
        if (!v) {
            rc = buf_append(out, "null", 4);
            continue;
        }
        switch (members[i].kind) {
        case NUMBER:
            rc = integer(v) ? buf_puts(out, v) : INBOX_EROW;
            break;
        case STRING:
            rc = jsonw_string(out, v, strlen(v));
            break;
        case TIMESTAMP:
            rc = timestamp(out, v);
            break;
        case TAGS:
            rc = pgjson_text_array(out, v, strlen(v));
            if (rc == PGJSON_EINVAL)
                rc = INBOX_EROW;
            break;
        case JSON: /* jsonb's own text */
            rc = *v ? buf_puts(out, v) : INBOX_EROW;
            break;
        }
    }
    return rc == 0 ? buf_append(out, "}", 1) : rc;
}

int inbox_conversation_json_row(const PGresult *res, int row, int col, buf_t *out)
{
    const char *cols[INBOX_CONV_NCOLS];

    if (PQnfields(res) < col + INBOX_CONV_NCOLS)
        return INBOX_EROW;
    for (int i = 0; i < INBOX_CONV_NCOLS; i++)
        cols[i] = PQgetisnull(res, row, col + i) ? NULL : PQgetvalue(res, row, col + i);
    return inbox_conversation_json(cols, out);
}

int inbox_page_json(const PGresult *res, const inbox_stmt_t *st,
                    void (*cursor_fn)(int64_t key, int64_t id, char out[64]), buf_t *out)
{
    size_t n = (size_t)PQntuples(res);
    size_t shown = n > st->limit ? st->limit : n;
    int rc = buf_puts(out, "{\"data\":[");

    for (size_t i = 0; rc == 0 && i < shown; i++) {
        if (i)
            rc = buf_append(out, ",", 1);
        if (rc == 0 && st->conversations)
            rc = inbox_conversation_json_row(res, (int)i, 0, out);
        else if (rc == 0)
            rc = buf_puts(out, PQgetvalue(res, (int)i, 2));
    }
    if (rc == 0 && n > st->limit && shown > 0) {
        char cur[64];
        int64_t key = strtoll(PQgetvalue(res, (int)shown - 1, 1), NULL, 10);
        int64_t id = strtoll(PQgetvalue(res, (int)shown - 1, 0), NULL, 10);
        cursor_fn(key, id, cur);
        rc = buf_printf(out, "],\"next_cursor\":\"%s\"}", cur);
    } else if (rc == 0) {
        rc = buf_puts(out, "],\"next_cursor\":null}");
    }
    return rc;
}
