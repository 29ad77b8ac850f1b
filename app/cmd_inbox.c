/*
 * herald inbox: the CRM inbox from the command line, with the same statements as
 * the HTTP API (storage/inbox.h): list conversations with filters and keyset
 * cursors, read a conversation's messages, reply as an agent (compliance checks,
 * queued for the scheduler), mark read, close and reopen. --json prints exactly
 * what the API answers.
 */
#include "app/cli.h"
#include "app/commands.h"
#include "compliance/segments.h"
#include "http/cursor.h"
#include "storage/inbox.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void)
{
    fprintf(stderr, "usage: herald inbox conversations [--status open|closed] [--tag T] [--number E164] [--q TEXT]\n"
                    "                                [--unread] [--limit N] [--cursor C] [--json] [--org ID]\n"
                    "       herald inbox messages ID [--limit N] [--cursor C] [--json] [--org ID]\n"
                    "       herald inbox reply ID TEXT [--org ID]\n"
                    "       herald inbox read|close|reopen ID [--org ID]\n");
    return EXIT_USAGE;
}

static void cursor_fn(int64_t key, int64_t id, char out[64])
{
    http_cursor_encode(key, id, out);
}

static int parse_id(const char *s, int64_t *out)
{
    if (!s || !*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 18)
        return -1;
    *out = strtoll(s, NULL, 10);
    return *out > 0 ? 0 : -1;
}

static int print_page(cli_session_t *s, inbox_stmt_t *st, int json, int messages)
{
    PGresult *r;
    const char *err;
    buf_t out;
    int rc = 0;

    if (cli_exec(s, buf_str(&st->sql), st->nparams, st->params, &r, &err) != 0) {
        fprintf(stderr, "herald: inbox: %s\n", err);
        return 1;
    }
    buf_init(&out, 64u << 20);
    if (inbox_page_json(r, st, cursor_fn, &out) != 0) {
        fprintf(stderr, "herald: inbox: page too large or malformed\n");
        rc = 1;
    } else if (json) {
        printf("%s\n", buf_str(&out));
    } else {
        int n = PQntuples(r);
        if ((size_t)n > st->limit)
            n = (int)st->limit;
        for (int i = 0; i < n; i++) {
            if (messages)
                printf("%s\t%s\t%s\t%s%s%s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 4), PQgetvalue(r, i, 3),
                       PQgetvalue(r, i, 5), atoi(PQgetvalue(r, i, 7)) ? "\t[media]" : "",
                       PQgetvalue(r, i, 6)[0] ? "" : "");
            else
                printf("%s\t%s\t%s\t%s\tunread=%s\t%s\t[%s]\t%s\n", PQgetvalue(r, i, INBOX_CONV_ID),
                       PQgetvalue(r, i, INBOX_CONV_PREVIEW), PQgetvalue(r, i, INBOX_CONV_OUR_NUMBER),
                       PQgetvalue(r, i, INBOX_CONV_CONTACT), PQgetvalue(r, i, INBOX_CONV_UNREAD),
                       PQgetvalue(r, i, INBOX_CONV_STATUS), PQgetvalue(r, i, INBOX_CONV_DISPLAY_TIME),
                       PQgetvalue(r, i, INBOX_CONV_DISPLAY_TAGS));
        }
        if ((size_t)PQntuples(r) > st->limit) {
            char cur[64];
            cursor_fn(strtoll(PQgetvalue(r, n - 1, 1), NULL, 10), strtoll(PQgetvalue(r, n - 1, 0), NULL, 10), cur);
            printf("next_cursor %s\n", cur);
        }
    }
    buf_close(&out);
    PQclear(r);
    return rc;
}

int cmd_inbox(int argc, char **argv)
{
    const char *sub, *org = NULL, *cursor = NULL, *id_arg = NULL, *text = NULL;
    inbox_filter_t f = {0};
    int json = 0, rc = 1;
    int64_t limit = 0, id = 0;
    cli_session_t s;

    if (argc < 2)
        return usage();
    sub = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--unread") == 0) {
            f.unread = 1;
        } else if (a[0] == '-' && a[1] == '-') {
            if (!v)
                return usage();
            i++;
            if (strcmp(a, "--status") == 0)
                f.status = v;
            else if (strcmp(a, "--tag") == 0)
                f.tag = v;
            else if (strcmp(a, "--number") == 0)
                f.number = v;
            else if (strcmp(a, "--q") == 0)
                f.q = v;
            else if (strcmp(a, "--cursor") == 0)
                cursor = v;
            else if (strcmp(a, "--org") == 0)
                org = v;
            else if (strcmp(a, "--limit") == 0) {
                if (parse_id(v, &limit) != 0 || limit > INBOX_LIMIT_MAX) {
                    fprintf(stderr, "herald: --limit must be 1..%d\n", INBOX_LIMIT_MAX);
                    return EXIT_USAGE;
                }
            } else
                return usage();
        } else if (!id_arg) {
            id_arg = a;
        } else if (!text) {
            text = a;
        } else {
            return usage();
        }
    }
    if (strcmp(sub, "conversations") == 0) {
        if (id_arg)
            return usage();
    } else if (!id_arg || parse_id(id_arg, &id) != 0) {
        return usage();
    }
    if ((strcmp(sub, "reply") == 0) != (text != NULL))
        return usage();
    if (cursor && http_cursor_decode(cursor, &f.after_key, &f.after_id) != 0) {
        fprintf(stderr, "herald: --cursor: invalid cursor\n");
        return EXIT_USAGE;
    }
    f.has_after = cursor != NULL;
    if (cli_session_open(&s) != 0)
        return 1;
    if (cli_session_org(&s, org) != 0)
        goto out;
    f.org_id = s.org_id;
    f.limit = (size_t)limit;
    f.display = !json;

    if (strcmp(sub, "conversations") == 0) {
        inbox_stmt_t st;
        const char *why;
        if (inbox_conversations_stmt(&f, &st, &why) != 0) {
            fprintf(stderr, "herald: %s\n", why);
            rc = EXIT_USAGE;
            goto out;
        }
        rc = print_page(&s, &st, json, 0);
        inbox_stmt_close(&st);
    } else if (strcmp(sub, "messages") == 0) {
        inbox_stmt_t st;
        char orgs[24], ids[24];
        const char *p[2] = {orgs, ids};
        PGresult *r;
        const char *err;
        snprintf(orgs, sizeof(orgs), "%" PRId64, s.org_id);
        snprintf(ids, sizeof(ids), "%" PRId64, id);
        if (cli_exec(&s, inbox_sql_conversation_exists, 2, p, &r, &err) != 0) {
            fprintf(stderr, "herald: inbox: %s\n", err);
            goto out;
        }
        if (PQntuples(r) != 1) {
            PQclear(r);
            fprintf(stderr, "herald: conversation %s not found\n", ids);
            goto out;
        }
        PQclear(r);
        inbox_messages_stmt(s.org_id, id, f.has_after ? f.after_id : 0, (size_t)limit, &st);
        rc = print_page(&s, &st, json, 1);
        inbox_stmt_close(&st);
    } else {
        char orgs[24], ids[24], segs[16], actor[80];
        const char *p[7] = {orgs, ids, NULL, NULL, NULL, NULL, NULL};
        const char *sql, *err;
        int np = 2;
        PGresult *r;
        sms_info_t info;

        snprintf(orgs, sizeof(orgs), "%" PRId64, s.org_id);
        snprintf(ids, sizeof(ids), "%" PRId64, id);
        if (strcmp(sub, "reply") == 0) {
            if (!*text || sms_analyze(text, strlen(text), 0, &info) != 0 || info.over_limit) {
                fprintf(stderr, "herald: reply must be non-empty UTF-8 of at most 1600 characters\n");
                rc = EXIT_USAGE;
                goto out;
            }
            snprintf(segs, sizeof(segs), "%u", info.segments);
            snprintf(actor, sizeof(actor), "cli:%s", getenv("USER") ? getenv("USER") : "unknown");
            p[2] = text;
            p[3] = segs;
            p[4] = sms_encoding_name(info.encoding);
            p[5] = "reply";
            p[6] = actor;
            np = 7;
            sql = inbox_sql_queue_reply;
        } else if (strcmp(sub, "read") == 0) {
            sql = inbox_sql_mark_read;
        } else if (strcmp(sub, "close") == 0 || strcmp(sub, "reopen") == 0) {
            p[2] = strcmp(sub, "close") == 0 ? "closed" : "open";
            np = 3;
            sql = inbox_sql_set_status;
        } else {
            rc = usage();
            goto out;
        }
        if (cli_exec(&s, sql, np, p, &r, &err) != 0) {
            fprintf(stderr, "herald: inbox: %s\n", err);
            goto out;
        }
        if (PQntuples(r) != 1) {
            fprintf(stderr, "herald: conversation %s not found\n", ids);
        } else if (strcmp(sub, "reply") != 0) {
            buf_t out;
            buf_init(&out, 64u << 20);
            if (inbox_conversation_json_row(r, 0, 0, &out) != 0) {
                fprintf(stderr, "herald: inbox: conversation %s cannot be written as JSON\n", ids);
            } else {
                printf("%s\n", buf_str(&out));
                rc = 0;
            }
            buf_close(&out);
        } else if (strcmp(PQgetvalue(r, 0, 0), "suppressed") == 0) {
            fprintf(stderr, "herald: the contact has opted out (suppressed): reply not sent\n");
        } else {
            printf("queued outbox_id %s message_id %s segments %u %s\n", PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2),
                   info.segments, sms_encoding_name(info.encoding));
            rc = 0;
        }
        PQclear(r);
    }
out:
    cli_session_close(&s);
    return rc;
}
