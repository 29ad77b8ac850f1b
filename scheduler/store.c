/*
 * The scheduler's SQL, in one place, and the array literals its batched statements
 * take. Each outcome batch is one UPDATE ... FROM unnest(arrays) statement, so the
 * cost of recording is one round trip per batch however many rows it holds.
 */
#include "scheduler/sched_int.h"
#include "scheduler/scheduler.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* Fill a campaign's outbox by this many rows when fewer than SCHED_FILL_LOW are due. */
#define SCHED_FILL_LOW "15000"
#define SCHED_FILL_CHUNK "8000"

/*
 * A lease is one UPDATE of the rows picked by the sub-select, matched by id = ANY
 * (array): an index probe per row whatever the planner guesses about the sub-select
 * (a join could become a merge join over the whole primary key under a generic plan).
 * The statement sets updated_at itself so the state trigger (009) calls no function.
 * The earlier unknown_since is told apart from the one set here by being older than
 * this transaction's now().
 */
#define LEASE_UPDATE(pick)                                                                                        \
    "UPDATE outbox o SET state = 'sending', lease_owner = $3, "                                                  \
    "lease_expires_at = now() + $4::int * interval '1 second', "                                                 \
    "next_attempt_at = now() + $4::int * interval '1 second', attempts = o.attempts + 1, "                       \
    "unknown_since = COALESCE(o.unknown_since, now()), updated_at = now() "                                      \
    "WHERE o.id = ANY (ARRAY(" pick ")) "                                                                        \
    "RETURNING o.id, o.org_id, o.to_e164, COALESCE(o.from_number, ''), COALESCE(o.messaging_service_sid, ''), "  \
    "o.body, o.segments, COALESCE(o.timezone, ''), o.attempts, "                                                 \
    "CASE WHEN o.unknown_since < now() THEN (extract(epoch FROM o.unknown_since) * 1000)::bigint ELSE 0 END, "   \
    "EXISTS (SELECT 1 FROM suppression s WHERE s.org_id = o.org_id AND s.e164 = o.to_e164), o.source"

/* $1 campaign, $2 limit, $3 owner, $4 lease seconds, $5 one-shot (template rows are real). */
const char sched_sql_lease_campaign[] = LEASE_UPDATE(
    "SELECT x.id FROM outbox x "
    "WHERE x.campaign_id = $1::bigint AND x.state IN ('queued', 'sending') AND x.next_attempt_at <= now() "
    "AND ($5::bool OR x.run_key <> '') "
    "ORDER BY x.next_attempt_at, x.id LIMIT $2::int FOR UPDATE SKIP LOCKED");

/* $1 org, $2 limit, $3 owner, $4 lease seconds, $5 sender. */
const char sched_sql_lease_direct[] = LEASE_UPDATE(
    "SELECT x.id FROM outbox x "
    "WHERE x.campaign_id IS NULL AND x.state IN ('queued', 'sending') AND x.next_attempt_at <= now() "
    "AND x.org_id = $1::bigint AND COALESCE(x.from_number, x.messaging_service_sid, '') = $5 "
    "ORDER BY x.next_attempt_at, x.id LIMIT $2::int FOR UPDATE SKIP LOCKED");

/*
 * The final states are spelled out rather than asked of herald_state_rank(): that SQL
 * function is STRICT around a CASE, so Postgres cannot inline it and ran it as a
 * statement of its own for every row recorded.
 */
/* Arrays: $1 id, $2 state, $3 sid, $4 code, $5 message, $6 delay ms, $7 keep unknown, $8 attempts delta; $9 owner. */
/*
 * A row given back unsent (state stays 'sending', nothing unknown) while its campaign
 * was canceled is canceled here, so a process stopping right after a cancel leaves
 * nothing behind.
 */
const char sched_sql_record[] =
    "UPDATE outbox o SET state = u.nstate, provider_sid = COALESCE(u.sid, o.provider_sid), "
    "error_code = u.code, error_message = u.msg, "
    "next_attempt_at = now() + COALESCE(u.delay_ms, 0) * interval '1 millisecond', "
    "lease_owner = NULL, lease_expires_at = NULL, "
    "unknown_since = CASE WHEN u.keep_unknown THEN o.unknown_since END, "
    "attempts = greatest(o.attempts + u.adelta, 0), "
    "sent_at = CASE WHEN u.nstate = 'sent' THEN COALESCE(o.sent_at, now()) ELSE o.sent_at END, "
    "finished_at = CASE WHEN u.nstate IN ('queued', 'sending', 'sent') THEN o.finished_at ELSE now() END, "
    "updated_at = now() "
    "FROM (SELECT u.*, CASE WHEN u.state = 'sending' AND NOT u.keep_unknown AND EXISTS (SELECT 1 FROM outbox x "
    "  JOIN campaigns c ON c.id = x.campaign_id WHERE x.id = u.id AND c.status = 'canceled') "
    "  THEN 'canceled' ELSE u.state END AS nstate "
    "  FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::text[], $6::bigint[], $7::bool[], "
    "  $8::int[]) AS u(id, state, sid, code, msg, delay_ms, keep_unknown, adelta)) u "
    "WHERE o.id = u.id AND o.lease_owner = $9";

/*
 * The record of plain successes (state 'sent', a sid, nothing else to say): $1 ids, $2
 * sids, $3 owner. Sets what sched_sql_record sets for them, from two arrays instead of
 * eight; state 'sent' is never the canceled case, and attempts do not change.
 */
const char sched_sql_record_sent[] =
    "UPDATE outbox o SET state = 'sent', provider_sid = u.sid, error_code = NULL, error_message = NULL, "
    "next_attempt_at = now(), lease_owner = NULL, lease_expires_at = NULL, unknown_since = NULL, "
    "sent_at = COALESCE(o.sent_at, now()), updated_at = now() "
    "FROM unnest($1::bigint[], $2::text[]) AS u(id, sid) WHERE o.id = u.id AND o.lease_owner = $3";

/* A reconciled row: $1 id, $2 sid, $3 owner. The sid must not belong to another row. */
const char sched_sql_reconciled[] =
    "UPDATE outbox SET state = 'sent', provider_sid = $2, sent_at = COALESCE(sent_at, now()), "
    "lease_owner = NULL, lease_expires_at = NULL, unknown_since = NULL, error_code = NULL, error_message = NULL "
    "WHERE id = $1::bigint AND lease_owner = $3 "
    "AND NOT EXISTS (SELECT 1 FROM outbox x WHERE x.provider_sid = $2 AND x.id <> $1::bigint)";

/* $1 org: its own Twilio account sid ('' for none), sealed auth token, API key sid, sealed API secret. */
const char sched_sql_org_creds[] =
    "SELECT COALESCE(twilio_account_sid, ''), twilio_auth_token_enc, COALESCE(twilio_api_key_sid, ''), "
    "twilio_api_secret_enc FROM orgs WHERE id = $1::bigint";

/* $1 org, $2 number, $3 our number, $4 sid. */
const char sched_sql_suppress[] = "SELECT herald_sched_suppress($1::bigint, $2, NULLIF($3, ''), NULLIF($4, ''))";

/* $1 campaign filter or NULL, $2 ids of the campaigns this process has lanes for. */
/*
 * Each round first moves the next recipients of running campaigns whose queue is short
 * into the outbox (herald_fill_due, migration 007); a campaign with recipients left
 * counts as having work even when none of its outbox rows is due yet.
 */
const char sched_sql_discover[] =
    "WITH f AS MATERIALIZED (SELECT herald_fill_due($1::bigint, " SCHED_FILL_LOW ", " SCHED_FILL_CHUNK ") AS n) "
    "SELECT c.id, c.org_id, c.status, COALESCE(c.from_number, c.messaging_service_sid), c.from_number IS NULL, "
    "COALESCE(c.rate_mps, 0)::float8, COALESCE(n.mps, 0)::float8, COALESCE(c.timezone, ''), "
    "COALESCE(c.quiet_start_min, -1), COALESCE(c.quiet_end_min, -1), c.cron IS NOT NULL, "
    "(EXISTS (SELECT 1 FROM outbox o WHERE o.campaign_id = c.id AND o.state IN ('queued', 'sending') "
    "  AND o.next_attempt_at <= now() AND (c.cron IS NULL OR o.run_key <> '') "
    "  AND c.status IN ('running', 'canceled')) "
    "  OR (c.status = 'running' AND c.cron IS NULL AND herald_unfilled(c.id) > 0)) "
    "FROM f, campaigns c LEFT JOIN numbers n ON n.e164 = c.from_number "
    "WHERE ($1::bigint IS NULL OR c.id = $1::bigint) AND (c.status = 'running' OR c.id = ANY ($2::bigint[]) "
    "  OR (c.status = 'canceled' AND EXISTS (SELECT 1 FROM outbox o WHERE o.campaign_id = c.id "
    "      AND o.state IN ('queued', 'sending') AND o.next_attempt_at <= now())))";

const char sched_sql_discover_direct[] =
    "SELECT d.org_id, d.sender, COALESCE(max(n.mps), 0)::float8 FROM "
    "(SELECT DISTINCT org_id, COALESCE(from_number, messaging_service_sid, '') AS sender, from_number FROM "
    " (SELECT org_id, from_number, messaging_service_sid FROM outbox WHERE campaign_id IS NULL "
    "  AND state IN ('queued', 'sending') AND next_attempt_at <= now() LIMIT 5000) x) d "
    "LEFT JOIN numbers n ON n.e164 = d.from_number GROUP BY 1, 2";

/* $1 campaign filter or NULL. */
const char sched_sql_complete[] =
    "UPDATE campaigns c SET status = CASE WHEN c.cron IS NULL THEN 'completed' ELSE 'scheduled' END, "
    "updated_at = now() WHERE c.status = 'running' AND ($1::bigint IS NULL OR c.id = $1::bigint) "
    "AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.campaign_id = c.id AND o.state IN ('queued', 'sending') "
    "AND (c.cron IS NULL OR o.run_key <> '')) AND (c.cron IS NOT NULL OR herald_unfilled(c.id) = 0) "
    "RETURNING c.id, c.status";

const char sched_sql_promote[] =
    "UPDATE campaigns SET status = 'running', updated_at = now() WHERE status = 'scheduled' AND cron IS NULL "
    "AND start_at <= now() AND ($1::bigint IS NULL OR id = $1::bigint) RETURNING id";

const char sched_sql_cron_due[] =
    "SELECT id, cron, COALESCE(timezone, 'UTC'), extract(epoch FROM next_run_at)::bigint, "
    "extract(epoch FROM now())::bigint FROM campaigns WHERE cron IS NOT NULL "
    "AND status IN ('scheduled', 'running') AND next_run_at <= now() AND ($1::bigint IS NULL OR id = $1::bigint)";

/* $1 id, $2 expected next_run_at epoch, $3 run key, $4 next epoch, $5 owner. */
const char sched_sql_cron_fire[] =
    "SELECT herald_cron_fire($1::bigint, to_timestamp($2::float8), $3, to_timestamp($4::float8), $5)";

/* $1 sender, $2 owner, $3 seconds: returns a row when this owner holds the sender. */
const char sched_sql_sender_lease[] =
    "INSERT INTO sched_senders AS s (sender, owner, expires_at) "
    "VALUES ($1, $2, now() + $3::int * interval '1 second') ON CONFLICT (sender) DO UPDATE "
    "SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at "
    "WHERE s.owner = EXCLUDED.owner OR s.expires_at < now() RETURNING s.owner";

const char sched_sql_sender_release[] = "DELETE FROM sched_senders WHERE owner = $1";

const char sched_sql_campaign_get[] =
    "SELECT status, COALESCE(cron, ''), COALESCE(timezone, ''), COALESCE(start_at > now(), false) "
    "FROM campaigns WHERE org_id = $1::bigint AND id = $2::bigint";

const char sched_sql_campaign_set[] = "SELECT herald_campaign_set_status($1::bigint, $2::bigint, $3, $4, "
                                      "to_timestamp(NULLIF($5, '')::float8))";

/* Recipients not yet in the outbox count as queued (canceled once the campaign is). */
const char sched_sql_campaign_counts[] =
    "SELECT state, sum(n)::bigint FROM ("
    "SELECT state, count(*) AS n FROM outbox WHERE campaign_id = $1::bigint "
    "AND (run_key <> '' OR (SELECT cron FROM campaigns WHERE id = $1::bigint) IS NULL) GROUP BY state "
    "UNION ALL SELECT CASE WHEN status = 'canceled' THEN 'canceled' ELSE 'queued' END, herald_unfilled(id) "
    "FROM campaigns WHERE id = $1::bigint AND cron IS NULL AND herald_unfilled(id) > 0) s "
    "GROUP BY state ORDER BY herald_state_rank(state), state";

const char sched_sql_campaign_rate[] =
    "SELECT count(*) FILTER (WHERE sent_at > now() - interval '10 seconds') / 10.0, "
    "count(*) FILTER (WHERE sent_at > now() - interval '60 seconds') / 60.0, "
    "COALESCE(sum(segments) FILTER (WHERE sent_at > now() - interval '10 seconds'), 0) / 10.0 "
    "FROM outbox WHERE campaign_id = $1::bigint AND state IN ('sent', 'delivered', 'undelivered', 'failed') "
    "AND sent_at > now() - interval '60 seconds'";

const char sched_sql_status_org[] =
    "SELECT o.org_id, g.twilio_auth_token_enc FROM outbox o JOIN orgs g ON g.id = o.org_id "
    "WHERE ($1::bigint IS NOT NULL AND o.id = $1::bigint) OR ($1::bigint IS NULL AND o.provider_sid = $2) LIMIT 1";

const char sched_sql_status_update[] =
    "WITH t AS (SELECT id FROM outbox WHERE ($1::bigint IS NOT NULL AND id = $1::bigint) "
    "  OR ($1::bigint IS NULL AND provider_sid = $2) LIMIT 1) "
    "UPDATE outbox o SET state = $3, provider_sid = COALESCE(o.provider_sid, $2), "
    "error_code = COALESCE($4::int, o.error_code), sent_at = COALESCE(o.sent_at, now()), unknown_since = NULL, "
    "finished_at = CASE WHEN herald_state_rank($3) = 3 THEN COALESCE(o.finished_at, now()) ELSE o.finished_at END "
    "FROM t WHERE o.id = t.id AND (o.provider_sid IS NULL OR o.provider_sid = $2) RETURNING o.id, o.state";

/* ---- array literals ---- */

void pg_array_init(pg_array_t *a)
{
    buf_init(&a->b, (size_t)1 << 30);
    a->n = 0;
    pg_array_reset(a);
}

void pg_array_reset(pg_array_t *a)
{
    buf_reset(&a->b);
    a->n = 0;
    a->closed = 0;
    if (buf_append(&a->b, "{", 1) != 0)
        abort();
}

static void sep(pg_array_t *a)
{
    if (a->closed) {
        a->b.len--; /* reopen: drop the '}' pg_array_str() added */
        a->closed = 0;
    }
    if (a->n++ > 0 && buf_append(&a->b, ",", 1) != 0)
        abort();
}

void pg_array_add_text(pg_array_t *a, const char *s)
{
    if (!s) {
        pg_array_add_null(a);
        return;
    }
    sep(a);
    if (buf_append(&a->b, "\"", 1) != 0)
        abort();
    for (; *s; s++) {
        if ((*s == '"' || *s == '\\') && buf_append(&a->b, "\\", 1) != 0)
            abort();
        if (buf_append(&a->b, s, 1) != 0)
            abort();
    }
    if (buf_append(&a->b, "\"", 1) != 0)
        abort();
}

void pg_array_add_int(pg_array_t *a, int64_t v)
{
    sep(a);
    if (buf_printf(&a->b, "%" PRId64, v) != 0)
        abort();
}

void pg_array_add_null(pg_array_t *a)
{
    sep(a);
    if (buf_puts(&a->b, "NULL") != 0)
        abort();
}

const char *pg_array_str(pg_array_t *a)
{
    if (buf_append(&a->b, "}", 1) != 0)
        abort();
    a->closed = 1;
    return buf_str(&a->b);
}

void pg_array_close(pg_array_t *a)
{
    buf_close(&a->b);
}
