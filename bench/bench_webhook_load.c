/*
 * bench_webhook_load: a load generator for POST /connect/webhook/twilio/sms.
 *
 * It pre-builds every request before the clock starts: a form body with a unique
 * MessageSid, one of --senders From numbers and a Body that matches the bench's
 * "price" rule every --price-every-th request, signed with X-Twilio-Signature as Twilio
 * would sign it for --public-url (provider/signature.h). Then it drives them over
 * --conns keep-alive connections to 127.0.0.1:--port in one of two modes:
 *
 *   open loop (--rate R): request i is due at start + i/R whatever the server does.
 *     A due request goes out on an idle connection, or waits for one; its latency is
 *     measured from the time it was due, not from the time it was written, so a
 *     stalled server shows up in the percentiles instead of slowing the generator
 *     down (no coordinated omission).
 *   max throughput (--max): each connection keeps --depth requests in flight
 *     (pipelined when depth > 1); latency is measured from the write.
 *
 * Requests due (or completed) during --warmup seconds are sent but not counted. It
 * prints the achieved rate, p50/p90/p99/p99.9/max latency, and the answers that were
 * not 200 (by status) plus transport errors; the exit status is 1 if any.
 *
 *   bench_webhook_load --port P [--rate 2000 | --max] [--conns 32] [--depth 1]
 *       [--duration 10] [--warmup 2] [--token benchtoken]
 *       [--public-url https://hooks.bench.test] [--to +15005550006]
 *       [--account AC0123456789abcdef0123456789abcdef] [--senders 100000]
 *       [--price-every 2] [--sid-prefix SM<time><pid>] [--max-requests 400000]
 */
#include "provider/signature.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define PATH "/connect/webhook/twilio/sms"
#define READ_MAX (256 * 1024)
#define FIFO_MAX 1024

typedef struct lconn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    int up;
    size_t id;
    char rbuf[READ_MAX];
    size_t rlen;
    /* In-flight requests, oldest first: index and the time latency counts from. */
    size_t fifo_req[FIFO_MAX];
    uint64_t fifo_t0[FIFO_MAX];
    size_t head, n;
} lconn_t;

typedef struct load {
    uv_loop_t *loop;
    uv_timer_t tick, stop_timer;
    lconn_t *conns;
    size_t nconns;
    int max_mode;
    unsigned depth;
    double rate;
    double duration, warmup;
    /* Pre-built requests: text of request i is text[off[i]] .. text[off[i + 1]]. */
    char *text;
    size_t *off;
    size_t nreq;
    size_t next;  /* next request to send */
    uint64_t start, measure_from, end;
    /* Results of counted requests. */
    uint64_t *lat;
    size_t nlat;
    size_t status_other, status_count[6];
    size_t errors, completed_total;
    int stopping;
} load_t;

static load_t L;

static uint64_t due_time(size_t i)
{
    return L.start + (uint64_t)((double)i * 1e9 / L.rate);
}

static void pump(lconn_t *c);
static void maybe_done(void);

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static void conn_fail(lconn_t *c, const char *why)
{
    if (!c->up)
        return;
    if (!L.stopping)
        fprintf(stderr, "connection %zu: %s (%zu requests lost)\n", c->id, why, c->n);
    L.errors += c->n;
    c->n = 0;
    c->up = 0;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_written(uv_write_t *w, int status)
{
    lconn_t *c = w->data;
    free(w);
    if (status < 0)
        conn_fail(c, uv_strerror(status));
}

static void send_one(lconn_t *c, size_t i, uint64_t t0)
{
    uv_write_t *w = malloc(sizeof(*w));
    uv_buf_t b = uv_buf_init(L.text + L.off[i], (unsigned)(L.off[i + 1] - L.off[i]));
    size_t slot = (c->head + c->n) % FIFO_MAX;
    int rc;

    if (!w)
        abort();
    c->fifo_req[slot] = i;
    c->fifo_t0[slot] = t0;
    c->n++;
    w->data = c;
    rc = uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc < 0) {
        free(w);
        conn_fail(c, uv_strerror(rc));
    }
}

/* Records one answer; t0 is when its latency started counting. */
static void record(int status, uint64_t t0, uint64_t now)
{
    L.completed_total++;
    if (t0 < L.measure_from || t0 >= L.end)
        return;
    L.lat[L.nlat++] = now - t0;
    if (status >= 100 && status < 600)
        L.status_count[status / 100]++;
    if (status != 200)
        L.status_other++;
}

static char *find_crlf2(char *s, size_t n)
{
    for (size_t i = 0; i + 4 <= n; i++)
        if (s[i] == '\r' && s[i + 1] == '\n' && s[i + 2] == '\r' && s[i + 3] == '\n')
            return s + i;
    return NULL;
}

/* Parses as many whole responses from c->rbuf as there are. */
static void parse(lconn_t *c)
{
    uint64_t now = uv_hrtime();
    size_t pos = 0;

    while (pos < c->rlen) {
        char *start = c->rbuf + pos;
        char *hend = find_crlf2(start, c->rlen - pos);
        size_t hlen, clen = 0, total;
        int status;
        char *p;

        if (!hend)
            break;
        hlen = (size_t)(hend - start) + 4;
        if (strncmp(start, "HTTP/1.", 7) != 0 || hlen < 13) {
            conn_fail(c, "not an HTTP response");
            return;
        }
        status = atoi(start + 9);
        for (p = start; p < hend; p++) {
            if ((*p == '\n') && strncasecmp(p + 1, "content-length:", 15) == 0) {
                clen = strtoul(p + 16, NULL, 10);
                break;
            }
        }
        total = hlen + clen;
        if (total > c->rlen - pos)
            break;
        if (c->n == 0) {
            conn_fail(c, "answer to no request");
            return;
        }
        record(status, c->fifo_t0[c->head], now);
        c->head = (c->head + 1) % FIFO_MAX;
        c->n--;
        pos += total;
    }
    memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
    c->rlen -= pos;
    if (c->rlen == sizeof(c->rbuf)) {
        conn_fail(c, "answer too large");
        return;
    }
    pump(c);
    maybe_done();
}

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    lconn_t *c = h->data;
    (void)sz;
    *b = uv_buf_init(c->rbuf + c->rlen, (unsigned)(sizeof(c->rbuf) - c->rlen));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    lconn_t *c = s->data;
    (void)b;
    if (nread < 0) {
        conn_fail(c, nread == UV_EOF ? "closed by the server" : uv_strerror((int)nread));
        return;
    }
    c->rlen += (size_t)nread;
    parse(c);
}

/* Sends what this connection may send now. */
static void pump(lconn_t *c)
{
    uint64_t now;

    if (!c->up || L.stopping)
        return;
    if (L.max_mode) {
        now = uv_hrtime();
        if (now >= L.end)
            return;
        while (c->n < L.depth && L.next < L.nreq)
            send_one(c, L.next++, now);
        return;
    }
    /* Open loop: one request in flight per connection; the oldest due one first. */
    now = uv_hrtime();
    if (c->n == 0 && L.next < L.nreq && due_time(L.next) <= now) {
        send_one(c, L.next, due_time(L.next));
        L.next++;
    }
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    for (size_t k = 0; k < L.nconns; k++)
        pump(&L.conns[k]);
}

static void stop_all(void)
{
    if (L.stopping)
        return;
    L.stopping = 1;
    uv_timer_stop(&L.tick);
    uv_close((uv_handle_t *)&L.tick, NULL);
    uv_close((uv_handle_t *)&L.stop_timer, NULL);
    for (size_t k = 0; k < L.nconns; k++)
        if (L.conns[k].up) {
            L.conns[k].up = 0;
            uv_close((uv_handle_t *)&L.conns[k].tcp, on_closed);
        }
}

static void on_stop(uv_timer_t *t)
{
    (void)t;
    stop_all();
}

/* Stops as soon as nothing more will be sent and nothing is in flight. */
static void maybe_done(void)
{
    uint64_t now = uv_hrtime();
    if (L.stopping || (L.next < L.nreq && now < L.end))
        return;
    if (!L.max_mode && L.next < L.nreq)
        return;
    for (size_t k = 0; k < L.nconns; k++)
        if (L.conns[k].up && L.conns[k].n)
            return;
    stop_all();
}

static size_t connected;

static void start_clock(void);

static void on_connect(uv_connect_t *req, int status)
{
    lconn_t *c = req->data;
    if (status < 0) {
        fprintf(stderr, "connect: %s\n", uv_strerror(status));
        exit(1);
    }
    c->up = 1;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (++connected == L.nconns)
        start_clock();
}

static void start_clock(void)
{
    double total = L.warmup + L.duration;
    L.start = uv_hrtime();
    L.measure_from = L.start + (uint64_t)(L.warmup * 1e9);
    L.end = L.start + (uint64_t)(total * 1e9);
    /* Drain for up to 5 s after the last due request, then stop whatever is left. */
    uv_timer_start(&L.stop_timer, on_stop, (uint64_t)(total * 1000) + 5000, 0);
    if (L.max_mode) {
        for (size_t k = 0; k < L.nconns; k++)
            pump(&L.conns[k]);
    } else {
        uv_timer_start(&L.tick, on_tick, 0, 1);
    }
}

static void append(char **p, size_t *cap, size_t *len, const char *s, size_t n)
{
    while (*len + n + 1 > *cap) {
        *cap *= 2;
        *p = realloc(*p, *cap);
        if (!*p)
            abort();
    }
    memcpy(*p + *len, s, n);
    *len += n;
    (*p)[*len] = '\0';
}

static void form_escape(char *out, size_t cap, const char *in)
{
    size_t o = 0;
    for (; *in && o + 4 < cap; in++) {
        unsigned char ch = (unsigned char)*in;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
            ch == '_' || ch == '.')
            out[o++] = (char)ch;
        else if (ch == ' ')
            out[o++] = '+';
        else
            o += (size_t)snprintf(out + o, cap - o, "%%%02X", ch);
    }
    out[o] = '\0';
}

/* Builds and signs request i. */
static void build(size_t i, const char *token, const char *url, const char *to, const char *account,
                  const char *prefix, unsigned senders, unsigned price_every, char **text, size_t *cap,
                  size_t *len)
{
    char sid[96], from[32], hdr[512], body[512], e_to[64], e_from[64], e_body[128], sig[29];
    const char *msg = price_every && i % price_every == 0 ? "what is the price?" : "hello there";
    twilio_param_t p[6];
    int n;

    snprintf(sid, sizeof(sid), "%s%010zu", prefix, i);
    snprintf(from, sizeof(from), "+1415%07u", (unsigned)(i % senders));
    p[0] = (twilio_param_t){"AccountSid", account};
    p[1] = (twilio_param_t){"Body", msg};
    p[2] = (twilio_param_t){"From", from};
    p[3] = (twilio_param_t){"MessageSid", sid};
    p[4] = (twilio_param_t){"NumMedia", "0"};
    p[5] = (twilio_param_t){"To", to};
    if (twilio_signature_compute(token, url, p, 6, sig) != 0) {
        fprintf(stderr, "cannot sign for %s\n", url);
        exit(1);
    }
    form_escape(e_to, sizeof(e_to), to);
    form_escape(e_from, sizeof(e_from), from);
    form_escape(e_body, sizeof(e_body), msg);
    n = snprintf(body, sizeof(body), "AccountSid=%s&MessageSid=%s&From=%s&To=%s&NumMedia=0&Body=%s", account, sid,
                 e_from, e_to, e_body);
    snprintf(hdr, sizeof(hdr),
             "POST " PATH " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
             "X-Twilio-Signature: %s\r\nContent-Length: %d\r\n\r\n",
             sig, n);
    append(text, cap, len, hdr, strlen(hdr));
    append(text, cap, len, body, (size_t)n);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    size_t k;
    if (L.nlat == 0)
        return 0;
    k = (size_t)(p / 100.0 * (double)(L.nlat - 1) + 0.5);
    return (double)L.lat[k] / 1e6;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_webhook_load --port P [--rate R | --max] [--conns N] [--depth D] [--duration S]\n"
                    "       [--warmup S] [--token T] [--public-url URL] [--to E164] [--account AC...]\n"
                    "       [--senders N] [--price-every K] [--sid-prefix P] [--max-requests N]\n");
    return 2;
}

/* User plus system CPU time of this process, in seconds. */
static double cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv)
{
    const char *token = "benchtoken", *pub = "https://hooks.bench.test", *to = "+15005550006";
    const char *account = "AC0123456789abcdef0123456789abcdef";
    char prefix[64], url[600];
    unsigned senders = 100000, price_every = 2;
    size_t max_requests = 400000, cap = 1 << 20, len = 0;
    int port = 0;
    struct sockaddr_in addr;
    double elapsed, cpu0, cpu1;

    memset(&L, 0, sizeof(L));
    L.nconns = 32;
    L.depth = 1;
    L.rate = 2000;
    L.duration = 10;
    L.warmup = 2;
    snprintf(prefix, sizeof(prefix), "SM%lx%x", (unsigned long)time(NULL), (unsigned)getpid());
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--max") == 0) {
            L.max_mode = 1;
            continue;
        }
        if (!v)
            return usage();
        i++;
        if (strcmp(a, "--port") == 0)
            port = atoi(v);
        else if (strcmp(a, "--rate") == 0)
            L.rate = atof(v);
        else if (strcmp(a, "--conns") == 0)
            L.nconns = strtoul(v, NULL, 10);
        else if (strcmp(a, "--depth") == 0)
            L.depth = (unsigned)atoi(v);
        else if (strcmp(a, "--duration") == 0)
            L.duration = atof(v);
        else if (strcmp(a, "--warmup") == 0)
            L.warmup = atof(v);
        else if (strcmp(a, "--token") == 0)
            token = v;
        else if (strcmp(a, "--public-url") == 0)
            pub = v;
        else if (strcmp(a, "--to") == 0)
            to = v;
        else if (strcmp(a, "--account") == 0)
            account = v;
        else if (strcmp(a, "--senders") == 0)
            senders = (unsigned)atoi(v);
        else if (strcmp(a, "--price-every") == 0)
            price_every = (unsigned)atoi(v);
        else if (strcmp(a, "--sid-prefix") == 0)
            snprintf(prefix, sizeof(prefix), "%s", v);
        else if (strcmp(a, "--max-requests") == 0)
            max_requests = strtoul(v, NULL, 10);
        else
            return usage();
    }
    if (port <= 0 || L.nconns == 0 || L.nconns > 4096 || L.depth == 0 || L.depth >= FIFO_MAX || L.rate <= 0 ||
        L.duration <= 0 || L.warmup < 0 || senders == 0)
        return usage();
    snprintf(url, sizeof(url), "%s%s", pub, PATH);

    L.nreq = L.max_mode ? max_requests : (size_t)(L.rate * (L.warmup + L.duration)) + 1;
    L.off = malloc((L.nreq + 1) * sizeof(*L.off));
    L.lat = malloc(L.nreq * sizeof(*L.lat));
    L.text = malloc(cap);
    if (!L.off || !L.lat || !L.text)
        abort();
    for (size_t i = 0; i < L.nreq; i++) {
        L.off[i] = len;
        build(i, token, url, to, account, prefix, senders, price_every, &L.text, &cap, &len);
    }
    L.off[L.nreq] = len;

    L.loop = uv_default_loop();
    uv_timer_init(L.loop, &L.tick);
    uv_timer_init(L.loop, &L.stop_timer);
    L.conns = calloc(L.nconns, sizeof(*L.conns));
    if (!L.conns)
        abort();
    uv_ip4_addr("127.0.0.1", port, &addr);
    for (size_t k = 0; k < L.nconns; k++) {
        lconn_t *c = &L.conns[k];
        c->id = k;
        uv_tcp_init(L.loop, &c->tcp);
        uv_tcp_nodelay(&c->tcp, 1);
        c->tcp.data = c;
        c->connect.data = c;
        if (uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&addr, on_connect) != 0) {
            fprintf(stderr, "cannot connect to 127.0.0.1:%d\n", port);
            return 1;
        }
    }
    /* The generator shares the CPUs with the server: its own CPU per request during
     * the run (not the pre-building) is printed so that it can be counted. */
    cpu0 = cpu_seconds();
    uv_run(L.loop, UV_RUN_DEFAULT);
    cpu1 = cpu_seconds();
    for (size_t k = 0; k < L.nconns; k++)
        L.errors += L.conns[k].n;
    if (uv_loop_close(L.loop) != 0)
        fprintf(stderr, "warning: loop not closed cleanly\n");

    elapsed = L.duration;
    qsort(L.lat, L.nlat, sizeof(*L.lat), cmp_u64);
    if (L.max_mode)
        printf("mode: max throughput, %zu connections x %u in flight, %.0f s (+%.0f s warmup)\n", L.nconns,
               L.depth, L.duration, L.warmup);
    else
        printf("mode: open loop at %.0f requests/s, %zu connections, %.0f s (+%.0f s warmup)\n", L.rate, L.nconns,
               L.duration, L.warmup);
    if (!L.max_mode && L.next < L.nreq)
        printf("warning: %zu of %zu scheduled requests were never sent (server too slow)\n", L.nreq - L.next,
               L.nreq);
    if (L.max_mode && L.next >= L.nreq)
        printf("warning: ran out of pre-built requests (raise --max-requests)\n");
    printf("answered in the measured window: %zu, achieved %.1f requests/s (sent in total: %zu)\n", L.nlat,
           (double)L.nlat / elapsed, L.next);
    printf("latency ms: p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n", pct(50), pct(90), pct(99),
           pct(99.9), L.nlat ? (double)L.lat[L.nlat - 1] / 1e6 : 0.0);
    printf("not 200: %zu (2xx %zu, 4xx %zu, 5xx %zu), transport errors: %zu\n", L.status_other, L.status_count[2],
           L.status_count[4], L.status_count[5], L.errors);
    printf("load generator CPU: %.2f s, %.1f us per request sent\n", cpu1 - cpu0,
           L.next ? (cpu1 - cpu0) * 1e6 / (double)L.next : 0.0);
    free(L.conns);
    free(L.text);
    free(L.off);
    free(L.lat);
    return L.status_other || L.errors ? 1 : 0;
}
