/*
 * The simulator's message store: a ring of the most recent messages (older ones
 * are evicted, so a long benchmark runs in bounded memory), their Twilio JSON
 * representation, and the JSON-lines ledger of every accepted message.
 *
 * A sid carries its sequence number (xor a per-process salt) in hex, so a fetch
 * finds its slot without an index; the other half of the sid is random.
 */
#include "sim.h"

#include "common/xalloc.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Sequence numbers are scrambled by an odd multiplier (invertible mod 2^64) so sids look random. */
#define SID_MUL UINT64_C(0x9e3779b97f4a7c15)

static uint64_t sid_mul_inverse(void)
{
    uint64_t x = SID_MUL;
    for (int i = 0; i < 6; i++)
        x *= 2 - SID_MUL * x;
    return x;
}

void sim_store_init(sim_t *s)
{
    if (s->cfg.max_messages == 0)
        s->cfg.max_messages = 200000;
    s->msgs = xcalloc(s->cfg.max_messages, sizeof(sim_msg_t));
    buf_init(&s->ledger_buf, 64 * 1024);
    s->next_seq = 1;
}

void sim_store_close(sim_t *s)
{
    for (size_t i = 0; i < s->cfg.max_messages; i++)
        free(s->msgs[i].strings);
    free(s->msgs);
    s->msgs = NULL;
    buf_close(&s->ledger_buf);
}

sim_msg_t *sim_store_add(sim_t *s)
{
    uint64_t seq = s->next_seq++;
    sim_msg_t *m = &s->msgs[seq % s->cfg.max_messages];
    free(m->strings);
    memset(m, 0, sizeof(*m));
    m->seq = seq;
    snprintf(m->sid, sizeof(m->sid), "SM%016" PRIx64 "%016" PRIx64, (uint64_t)((seq * SID_MUL) ^ s->salt),
             sim_rand(s));
    return m;
}

sim_msg_t *sim_store_by_seq(sim_t *s, uint64_t seq)
{
    if (seq == 0 || seq >= s->next_seq)
        return NULL;
    sim_msg_t *m = &s->msgs[seq % s->cfg.max_messages];
    return m->seq == seq ? m : NULL;
}

sim_msg_t *sim_store_find(sim_t *s, const char *sid)
{
    if (strlen(sid) != 34 || (sid[0] != 'S' && sid[0] != 'M') || (sid[1] != 'M' && sid[1] != 'S'))
        return NULL;
    char hex[17];
    memcpy(hex, sid + 2, 16);
    hex[16] = '\0';
    char *end;
    uint64_t v = strtoull(hex, &end, 16);
    if (*end)
        return NULL;
    sim_msg_t *m = sim_store_by_seq(s, (v ^ s->salt) * sid_mul_inverse());
    return m && strcmp(m->sid, sid) == 0 ? m : NULL;
}

void sim_msg_set_strings(sim_msg_t *m, const char *from, const char *to, const char *body, const char *msid,
                         const char *status_callback)
{
    const char *src[5] = {from, to, body, msid, status_callback};
    size_t len[5], total = 0;
    for (int i = 0; i < 5; i++) {
        len[i] = src[i] ? strlen(src[i]) + 1 : 0;
        total += len[i];
    }
    free(m->strings);
    m->strings = xmalloc(total ? total : 1);
    const char *dst[5];
    size_t off = 0;
    for (int i = 0; i < 5; i++) {
        if (!src[i]) {
            dst[i] = NULL;
            continue;
        }
        memcpy(m->strings + off, src[i], len[i]);
        dst[i] = m->strings + off;
        off += len[i];
    }
    m->from = dst[0];
    m->to = dst[1];
    m->body = dst[2];
    m->msid = dst[3];
    m->status_callback = dst[4];
}

const char *sim_msg_status(const sim_msg_t *m, int64_t now_ms)
{
    if (m->inbound)
        return "received";
    if (m->immediate_failed)
        return "failed";
    if (now_ms <= m->send_ms)
        return m->msid ? "accepted" : "queued";
    if (now_ms < m->sent_ms)
        return "sending";
    if (now_ms < m->final_ms)
        return "sent";
    switch (m->final) {
    case SIM_FINAL_DELIVERED:
        return "delivered";
    case SIM_FINAL_UNDELIVERED:
        return "undelivered";
    case SIM_FINAL_FAILED:
        return "failed";
    }
    return "failed";
}

void sim_rfc2822(int64_t ms, char out[40])
{
    /* Most calls format the current second; one cached result saves strftime on the hot path. */
    static int64_t cached_sec = INT64_MIN;
    static char cached[40];
    int64_t sec = ms / 1000;
    if (sec != cached_sec) {
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(cached, sizeof(cached), "%a, %d %b %Y %H:%M:%S +0000", &tm);
        cached_sec = sec;
    }
    memcpy(out, cached, sizeof(cached));
}

int sim_json_str(buf_t *out, const char *s)
{
    if (!s)
        return buf_append(out, "null", 4);
    int rc = buf_append(out, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        rc |= buf_append(out, run, (size_t)(s - run));
        switch (c) {
        case '"':
            rc |= buf_append(out, "\\\"", 2);
            break;
        case '\\':
            rc |= buf_append(out, "\\\\", 2);
            break;
        case '\n':
            rc |= buf_append(out, "\\n", 2);
            break;
        case '\r':
            rc |= buf_append(out, "\\r", 2);
            break;
        case '\t':
            rc |= buf_append(out, "\\t", 2);
            break;
        default:
            rc |= buf_printf(out, "\\u%04x", c);
            break;
        }
        run = s + 1;
    }
    rc |= buf_append(out, run, (size_t)(s - run));
    rc |= buf_append(out, "\"", 1);
    return rc;
}

#define LIT(b, s) buf_append((b), (s), sizeof(s) - 1)

static int put_uint(buf_t *b, unsigned long long v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return buf_append(b, tmp + i, sizeof(tmp) - i);
}

/* Appends a string known to need no JSON escaping (sids, dates, status names). */
static int put_plain(buf_t *b, const char *s)
{
    int rc = LIT(b, "\"");
    rc |= buf_puts(b, s);
    rc |= LIT(b, "\"");
    return rc;
}

int sim_msg_json(const sim_t *s, const sim_msg_t *m, int64_t now_ms, buf_t *out)
{
    const char *acct = s->cfg.accounts[m->account].sid;
    char created[40], updated[40], sent[40];
    const char *status = sim_msg_status(m, now_ms);
    int64_t upd = m->created_ms;
    if (!m->inbound && !m->immediate_failed) {
        if (now_ms > m->send_ms)
            upd = m->send_ms;
        if (now_ms >= m->sent_ms)
            upd = m->sent_ms;
        if (now_ms >= m->final_ms)
            upd = m->final_ms;
    }
    int is_sent = m->inbound || (!m->immediate_failed && now_ms >= m->sent_ms);
    sim_rfc2822(m->created_ms, created);
    sim_rfc2822(upd, updated);
    sim_rfc2822(m->inbound ? m->created_ms : m->sent_ms, sent);
    int failed =
        !m->inbound && (m->immediate_failed || (now_ms >= m->final_ms && m->final != SIM_FINAL_DELIVERED));

    int rc = LIT(out, "{\"account_sid\":");
    rc |= sim_json_str(out, acct);
    rc |= LIT(out, ",\"api_version\":\"" SIM_API_VERSION "\",\"body\":");
    rc |= sim_json_str(out, m->body);
    rc |= LIT(out, ",\"date_created\":");
    rc |= put_plain(out, created);
    rc |= LIT(out, ",\"date_sent\":");
    rc |= is_sent ? put_plain(out, sent) : LIT(out, "null");
    rc |= LIT(out, ",\"date_updated\":");
    rc |= put_plain(out, updated);
    rc |= m->inbound ? LIT(out, ",\"direction\":\"inbound\",\"error_code\":")
                     : LIT(out, ",\"direction\":\"outbound-api\",\"error_code\":");
    rc |= failed ? put_uint(out, (unsigned)m->error_code) : LIT(out, "null");
    rc |= LIT(out, ",\"error_message\":null,\"from\":");
    rc |= sim_json_str(out, (m->msid && !is_sent) ? NULL : m->from);
    rc |= LIT(out, ",\"messaging_service_sid\":");
    rc |= sim_json_str(out, m->msid);
    rc |= LIT(out, ",\"num_media\":\"");
    rc |= put_uint(out, m->num_media);
    rc |= LIT(out, "\",\"num_segments\":\"");
    rc |= put_uint(out, m->segments);
    rc |= LIT(out, "\",\"price\":");
    if (is_sent && !m->inbound)
        rc |= buf_printf(out, "\"-%u.%05u\"", (m->segments * 790u) / 100000u, (m->segments * 790u) % 100000u);
    else
        rc |= LIT(out, "null");
    rc |= LIT(out, ",\"price_unit\":\"USD\",\"sid\":");
    rc |= put_plain(out, m->sid);
    rc |= LIT(out, ",\"status\":");
    rc |= put_plain(out, status);
    rc |= LIT(out, ",\"subresource_uris\":{\"media\":\"/" SIM_API_VERSION "/Accounts/");
    rc |= buf_puts(out, acct);
    rc |= LIT(out, "/Messages/");
    rc |= buf_puts(out, m->sid);
    rc |= LIT(out, "/Media.json\",\"feedback\":\"/" SIM_API_VERSION "/Accounts/");
    rc |= buf_puts(out, acct);
    rc |= LIT(out, "/Messages/");
    rc |= buf_puts(out, m->sid);
    rc |= LIT(out, "/Feedback.json\"},\"to\":");
    rc |= sim_json_str(out, m->to);
    rc |= LIT(out, ",\"uri\":\"/" SIM_API_VERSION "/Accounts/");
    rc |= buf_puts(out, acct);
    rc |= LIT(out, "/Messages/");
    rc |= buf_puts(out, m->sid);
    rc |= LIT(out, ".json\"}");
    return rc;
}

void sim_ledger_write(sim_t *s, const sim_msg_t *m, int lost)
{
    if (!s->ledger)
        return;
    buf_t *b = &s->ledger_buf;
    static int64_t ts_sec = -1;
    static char ts[32];
    buf_reset(b);
    if (m->created_ms / 1000 != ts_sec) {
        ts_sec = m->created_ms / 1000;
        time_t t = (time_t)ts_sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    }
    int rc = buf_printf(b, "{\"sid\":\"%s\",\"account_sid\":\"%s\",\"direction\":\"%s\",\"from\":", m->sid,
                        s->cfg.accounts[m->account].sid, m->inbound ? "inbound" : "outbound-api");
    rc |= sim_json_str(b, m->from);
    rc |= buf_puts(b, ",\"to\":");
    rc |= sim_json_str(b, m->to);
    rc |= buf_puts(b, ",\"messaging_service_sid\":");
    rc |= sim_json_str(b, m->msid);
    rc |= buf_puts(b, ",\"body\":");
    rc |= sim_json_str(b, m->body);
    rc |= buf_printf(b,
                     ",\"segments\":%u,\"num_media\":%u,\"time\":\"%s.%03dZ\",\"time_ms\":%" PRId64
                     ",\"response_lost\":%s}\n",
                     m->segments, m->num_media, ts, (int)(m->created_ms % 1000), m->created_ms,
                     lost ? "true" : "false");
    if (rc == 0)
        fwrite(b->data, 1, b->len, s->ledger);
}
