/*
 * Inbox statements (see inbox.h), built with numbered parameters only, never with
 * caller text in the SQL. A list page is two steps in one statement: the SQL function
 * herald_inbox_page() of migration 008 picks the page's keys (an index range from the
 * cursor in list order, last_message_at DESC, id DESC, or for a rare tag or word a GIN
 * lookup of the few matching rows: the migration has the figures), and the rows of
 * those keys are read for the page alone, by ctid (the function runs in the same
 * snapshot, so a ctid names the very row version it chose). Each row's JSON costs a
 * few microseconds, so it is never built for candidate rows that a sort or a filter
 * then drops.
 */
#include "storage/inbox.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONV_JSON                                                                                            \
    "json_build_object('id', c.id, 'our_number', c.our_number, 'contact', c.contact_e164, 'status', "        \
    "c.status, 'unread', c.unread, 'last_message_at', c.last_message_at, 'last_message_preview', "          \
    "c.last_message_preview, 'last_campaign_id', c.last_campaign_id, 'tags', c.tags, 'form_state', "        \
    "c.form_state, 'created_at', c.created_at)::text"

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
                                   " RETURNING " CONV_JSON;

const char inbox_sql_set_status[] = "UPDATE conversations c SET status = $3 WHERE c.org_id = $1 AND c.id = $2"
                                    " RETURNING " CONV_JSON;

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
    buf_init(&st->sql, 4096);
    must(buf_puts(&st->sql, "SELECT c.id, (extract(epoch FROM c.last_message_at) * 1000000)::bigint, " CONV_JSON));
    if (f->display)
        must(buf_puts(&st->sql, ", c.our_number, c.contact_e164, c.status, c.unread, "
                                "to_char(c.last_message_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
                                "coalesce(c.last_message_preview, ''), array_to_string(c.tags, ',')"));
    /* The keys come with each row's ctid, so the rows are read again without an index. */
    must(buf_puts(&st->sql, " FROM herald_inbox_page($1::bigint, $2::text, $3::text, $4::text, $5::text, $6::boolean, "
                            "$7::bigint, $8::bigint, $9::int) k JOIN conversations c ON c.ctid = k.row_tid "
                            "ORDER BY k.last_message_at DESC, k.id DESC"));
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

int inbox_page_json(const PGresult *res, size_t limit, void (*cursor_fn)(int64_t key, int64_t id, char out[64]),
                    buf_t *out)
{
    size_t n = (size_t)PQntuples(res);
    size_t shown = n > limit ? limit : n;
    int rc = buf_puts(out, "{\"data\":[");

    for (size_t i = 0; rc == 0 && i < shown; i++) {
        if (i)
            rc = buf_puts(out, ",");
        if (rc == 0)
            rc = buf_puts(out, PQgetvalue(res, (int)i, 2));
    }
    if (rc == 0 && n > limit && shown > 0) {
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
